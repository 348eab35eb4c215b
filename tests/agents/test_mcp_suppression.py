"""The MCP tools and a job's suppression files: counted by validate_job and preview_job, never
mailed nor charged against the server's cap by run_job, read only inside the root."""

from __future__ import annotations

import pytest
from mcpsupport import Setup, connect
from support import make_job

pytestmark = pytest.mark.anyio


async def test_suppressed_recipients_are_counted_and_never_mailed(setup: Setup) -> None:
    (setup.root / "job" / "unsub.txt").write_text("user2@EXAMPLE.com\n", encoding="utf-8")
    make_job(setup.root / "job", setup.jobs_server.port, suppress=["unsub.txt"])
    async with connect(setup.env, setup.root) as mcp:
        validated = await mcp.ok("validate_job", path="job/job.yaml")
        preview = await mcp.ok("preview_job", path="job/job.yaml", limit=1)
        run = await mcp.ok("run_job", path="job/job.yaml", token=preview["token"])
    assert (validated["messages"], validated["suppressed"]) == (3, 1)
    assert preview["suppressed"] == 1
    assert (run["exit_code"], run["status"]) == (0, "completed")
    assert run["summary"]["suppressed"] == 1
    assert sorted(m.rcpt_tos[0] for m in setup.jobs_server.messages) == [
        "user1@example.com",
        "user3@example.com",
    ]
    assert run["remaining_messages"] == 18  # the suppressed recipient is not charged


async def test_a_suppression_file_outside_the_root_is_refused(setup: Setup) -> None:
    outside = setup.root.parent / "elsewhere.txt"
    outside.write_text("user2@example.com\n", encoding="utf-8")
    make_job(setup.root / "job", setup.jobs_server.port, suppress=[str(outside)])
    async with connect(setup.env, setup.root) as mcp:
        error = await mcp.refused("validate_job", path="job/job.yaml")
    assert "suppress" in error
    assert "outside" in error or "root" in error
