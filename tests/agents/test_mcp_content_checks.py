"""The MCP server's preview_job shows the content checks' warnings, as `validate` prints them."""

from __future__ import annotations

import pytest
from mcpsupport import Setup, connect
from support import make_job

pytestmark = pytest.mark.anyio


async def test_preview_job_lists_the_content_warnings(setup: Setup) -> None:
    job = make_job(setup.root / "images", setup.jobs_server.port)
    (job.parent / "templates" / "body.html.j2").write_text(
        '<p>{{ name }} <img src="logo.png"></p>', encoding="utf-8"
    )
    async with connect(setup.env, setup.root) as mcp:
        preview = await mcp.ok("preview_job", path="images/job.yaml")
        clean = await mcp.ok("preview_job", path="job/job.yaml")

    assert preview["warnings"] == [
        "img-without-alt in 3 messages (user1@example.com, user2@example.com, "
        'user3@example.com): <img src="logo.png"> without alt text',
        "relative-url in 3 messages (user1@example.com, user2@example.com, user3@example.com): "
        'relative src="logo.png": a mailbox has no page to resolve it against (use an absolute '
        "https URL, or cid: for an attached image)",
    ]
    assert clean["warnings"] == []
    assert setup.jobs_server.messages == []
