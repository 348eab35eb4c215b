"""The tools as an agent lists them through the SDK's stdio client: every argument's bounds and
the required ones in the schema, as the server enforces them; descriptions that name the gates;
a call beyond a bound refused in one line."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcpsupport import Setup, connect

from batchmail.agents.mcp_server import ONE_LINE, PATH_PATTERN
from batchmail.load.addresses import has_line_break

pytestmark = pytest.mark.anyio

REQUIRED = {
    "validate_job": ["path"],
    "preview_job": ["path"],
    "run_job": ["path", "token"],
    "send_email": ["to", "subject", "body"],
    "save_draft": ["to", "subject", "body"],
    "get_report": ["path"],
}


def strings_and_lists(schema: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every string or array schema inside `schema`, with where it is."""
    found = []
    kind = schema.get("type")
    if kind in {"string", "array"}:
        found.append((where, schema))
    for alternative in schema.get("anyOf", []):
        found += strings_and_lists(alternative, where)
    if "items" in schema:
        found += strings_and_lists(schema["items"], f"{where}[]")
    return found


async def test_every_argument_is_bounded_and_the_required_ones_are_listed(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        tools = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        await mcp.ok("validate_job", path="job/job.yaml")
    assert set(tools) == set(REQUIRED)
    for name, tool in tools.items():
        schema = tool.input_schema
        assert sorted(schema["required"]) == sorted(REQUIRED[name]), name
        for argument, part in schema["properties"].items():
            for where, bounded in strings_and_lists(part, f"{name}.{argument}"):
                if bounded["type"] == "array":
                    assert "maxItems" in bounded, where
                else:
                    assert "maxLength" in bounded or "pattern" in bounded, where
        assert "answer" not in schema["properties"]  # the person's, never the agent's

    def prop(tool: str, argument: str) -> dict[str, Any]:
        part: dict[str, Any] = tools[tool].input_schema["properties"][argument]
        return next((p for p in part.get("anyOf", []) if p["type"] != "null"), part)

    for tool in ("validate_job", "preview_job", "run_job", "get_report"):
        path = prop(tool, "path")
        assert (path["minLength"], path["maxLength"], path["pattern"]) == (1, 4096, PATH_PATTERN)
    assert prop("run_job", "token")["pattern"] == "^[0-9a-f]{64}$"
    for writes in ("send_email", "save_draft"):  # a draft has send_email's bounds
        assert prop(writes, "to")["maxLength"] == 998
        assert prop(writes, "to")["pattern"] == ONE_LINE
        assert prop(writes, "subject")["maxLength"] == 998
        assert prop(writes, "subject")["pattern"] == ONE_LINE
        assert prop(writes, "body")["maxLength"] == 1_000_000
        assert prop(writes, "html")["maxLength"] == 1_000_000
        attachments = prop(writes, "attachments")
        assert attachments["maxItems"] == 20
        assert attachments["items"]["maxLength"] == 4096
    for tool, copies in (("send_email", "cc"), ("send_email", "bcc"), ("save_draft", "cc")):
        assert prop(tool, copies)["maxItems"] == 50
        assert prop(tool, copies)["items"]["pattern"] == ONE_LINE
    assert "bcc" not in tools["save_draft"].input_schema["properties"]


async def test_the_descriptions_name_the_gates(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        tools = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        instructions = mcp.session.initialize_result
        await mcp.ok("validate_job", path="job/job.yaml")
    run_job, send_email = tools["run_job"].description, tools["send_email"].description
    assert run_job is not None
    assert send_email is not None
    for gate in ("token", "inputs", "allowlist", "BATCHMAIL_MCP_ALLOW", "cap"):
        assert gate in run_job, gate
    for gate in ("allowlist", "BATCHMAIL_MCP_ALLOW", "cap", "BATCHMAIL_MCP_MAX_MESSAGES", "root"):
        assert gate in send_email, gate
    assert "token" in tools["preview_job"].description  # type: ignore[operator]
    assert instructions is not None
    assert "not the caller's" in (instructions.instructions or "")


async def test_a_call_beyond_a_bound_is_refused_in_one_line(setup: Setup) -> None:
    many = [f"user{n}@example.com" for n in range(51)]
    async with connect(setup.env, setup.root) as mcp:
        cc = await mcp.refused("send_email", to="user1@example.com", subject="A", body="", cc=many)
        subject = await mcp.refused(
            "send_email", to="user1@example.com", subject="S" * 999, body=""
        )
        files = await mcp.refused(
            "send_email", to="user1@example.com", subject="A", body="", attachments=["a"] * 21
        )
        token = await mcp.refused("run_job", path="job/job.yaml", token="my-token")
        empty = await mcp.refused("validate_job", path="")
        blank = await mcp.refused("get_report", path="   ")
        broken = await mcp.refused(
            "send_email", to="user1@example.com", subject="A\u2028B", body="x"
        )
    assert cc == "send_email: the argument 'cc' must have at most 50 items"
    assert subject == "send_email: the argument 'subject' must be at most 998 characters"
    assert files == "send_email: the argument 'attachments' must have at most 20 items"
    assert token == (
        "run_job: the argument 'token' must be the 64 hex digits preview_job returned for this "
        "job: preview it first"
    )
    assert empty == "validate_job: the argument 'path' must not be empty"
    assert blank.startswith("get_report: the argument 'path' must be a path that is not blank")
    assert broken.startswith("send_email: the argument 'subject' must be one line: no line break")
    assert setup.mail_server.connections == 0
    assert setup.jobs_server.connections == 0


@given(st.text(st.characters(codec="utf-8"), max_size=30))
def test_the_one_line_pattern_is_the_servers_line_break_check(text: str) -> None:
    assert (re.fullmatch(ONE_LINE, text) is not None) == (not has_line_break(text))


@given(st.text(st.characters(codec="utf-8"), max_size=30))
def test_the_path_pattern_is_the_roots_check(text: str) -> None:
    """Blank or with a NUL: what the root refuses (`Root.resolve`)."""
    refused = not text.strip() or "\x00" in text
    assert (re.fullmatch(PATH_PATTERN, text) is not None) == (not refused)
