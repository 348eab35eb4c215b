"""`batchmail mcp`'s tool arguments and error lines, as an agent meets them through the SDK's
stdio client: schemas that say what is required and within which bounds, one-line refusals."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.types import CallToolResult, TextContent
from mcpsupport import Setup, connect
from support import make_job

from batchmail.agents.mcp_server import build_server
from batchmail.agents.policy import Policy
from batchmail.agents.tools import BatchmailTools

pytestmark = pytest.mark.anyio


def one_line(error: str) -> None:
    assert "http" not in error
    assert "validation error" not in error.lower()
    assert "pydantic" not in error.lower()


async def test_a_missing_or_mistyped_argument_is_one_line_naming_it(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        missing = await mcp.refused("send_email", subject="Hi", body="x\n")
        mistyped = await mcp.refused("preview_job", path="job/job.yaml", limit="many")
        listed = await mcp.refused(
            "send_email", to="user1@example.com", subject="Hi", body="x\n", attachments="a.pdf"
        )
    for error in (missing, mistyped, listed):
        one_line(error)
    assert missing.startswith("send_email: ")
    assert "'to'" in missing
    assert "missing" in missing
    assert "'limit'" in mistyped
    assert "whole number" in mistyped or "integer" in mistyped
    assert "'attachments'" in listed
    assert setup.mail_server.connections == 0


async def test_numeric_arguments_are_bounded_in_the_schema_not_clamped(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        tools = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        too_many = await mcp.refused("preview_job", path="job/job.yaml", limit=50)
        too_few = await mcp.refused("preview_job", path="job/job.yaml", limit=0)
        most = await mcp.ok("preview_job", path="job/job.yaml", limit=20)
    limit = tools["preview_job"].input_schema["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 20, 3)
    for error in (too_many, too_few):
        one_line(error)
        assert "'limit'" in error
    assert "20" in too_many
    assert "1" in too_few
    assert len(most["previews"]) == 3  # the job has three recipients


async def test_the_token_is_required_where_it_is_required(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        tools = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        missing = await mcp.refused("run_job", path="job/job.yaml")
    assert set(tools["run_job"].input_schema["required"]) == {"path", "token"}
    assert set(tools["preview_job"].input_schema["required"]) == {"path"}
    one_line(missing)
    assert "'token'" in missing
    assert "preview it first" in missing
    assert setup.jobs_server.connections == 0


async def test_error_locations_are_relative_to_the_root_not_the_working_directory(
    setup: Setup, tmp_path: Path
) -> None:
    broken = setup.root / "broken"
    make_job(broken, 25, rate={"bogus": 1})
    assert setup.root.parent == tmp_path
    async with connect(setup.env, tmp_path) as mcp:  # the client's choice of directory
        invalid = await mcp.call("validate_job", path="broken/job.yaml")
        make_job(broken, 25, attachments=["nothing/*.pdf"])
        unmatched = await mcp.refused("validate_job", path="broken/job.yaml")
    errors = invalid.structured_content["errors"]  # type: ignore[index]
    assert errors
    assert all(line.startswith("broken/job.yaml:") for line in errors), errors
    assert unmatched.startswith("broken/job.yaml:")
    assert str(setup.root) not in unmatched
    assert "root/" not in unmatched
    assert "(looked in broken)" in unmatched


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
TOOL_ARGUMENTS = {
    "validate_job": ["path"],
    "preview_job": ["path", "limit"],
    "run_job": ["path", "token"],
    "send_email": ["to", "subject", "body", "html", "attachments"],
    "get_report": ["path"],
}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_whatever_the_arguments_the_answer_is_one_line(tmp_path: Path, data: st.DataObject) -> None:
    """Arguments of any JSON shape, any of them missing: a one-line result, never a dump. (In
    process, through the SDK's server object; the allowlist is empty, so nothing is sent; the
    root is empty, the same for every example.)"""
    tool = data.draw(st.sampled_from(sorted(TOOL_ARGUMENTS)))
    names = data.draw(st.lists(st.sampled_from(TOOL_ARGUMENTS[tool]), unique=True))
    arguments = {name: data.draw(JSON) for name in names}
    env = {"BATCHMAIL_MCP_ROOT": str(tmp_path)}
    server = build_server(BatchmailTools(env, Policy.from_env(env)))
    result = anyio.run(server.call_tool, tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error
    (content,) = result.content
    assert isinstance(content, TextContent)
    assert "\n" not in content.text
    assert "http" not in content.text
    assert "Traceback" not in content.text
    assert "internal error" not in content.text
