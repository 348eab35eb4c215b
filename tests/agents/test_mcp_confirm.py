"""`BATCHMAIL_MCP_CONFIRM=elicit`: run_job and send_email ask the person through MCP elicitation,
after the other gates, before anything leaves. The SDK's stdio client with an elicitation
callback plays the person; messages go to real SMTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp.types import ElicitRequestFormParams, ElicitRequestParams, ElicitResult, ErrorData
from mcpsupport import SERVER, Mcp, Person, Setup, connect
from support import PASSWORD, REPO, make_job, parse

from batchmail.agents.confirm import SAMPLE, Outline
from batchmail.agents.policy import REDACTED

pytestmark = pytest.mark.anyio

JOB = "job/job.yaml"


def asking(setup: Setup, **overrides: str | None) -> dict[str, str]:
    return setup.server_env(BATCHMAIL_MCP_CONFIRM="elicit", **overrides)


async def run(mcp: Mcp, path: str = JOB) -> tuple[bool, str]:
    """Preview then run; whether it was sent, and the refusal's line or the run's status."""
    token = (await mcp.ok("preview_job", path=path))["token"]
    result = await mcp.call("run_job", path=path, token=token)
    assert isinstance(result.structured_content, dict)
    if result.is_error:
        return False, result.structured_content["error"]
    return True, result.structured_content["status"]


async def test_an_accepted_run_is_delivered_once_and_the_question_says_what(setup: Setup) -> None:
    person = Person()
    async with connect(asking(setup), setup.root, person) as mcp:
        listed = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        sent, status = await run(mcp)
    assert (sent, status) == (True, "completed")
    assert sorted(m.rcpt_tos[0] for m in setup.jobs_server.messages) == [
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
    ]
    (asked,) = person.asked
    assert isinstance(asked, ElicitRequestFormParams)
    lines = asked.message.split("\n")
    assert lines[0] == "Send 3 messages of the job 'job'?"
    assert lines[1] == "From: Reports <reports@example.com>"
    assert lines[2].startswith("Subject: Report for User 1 (the first message's")
    assert lines[3] == ("Recipients: 3: user1@example.com, user2@example.com, user3@example.com")
    assert lines[4] == "Attachments: report.pdf, chart.bin"
    schema = asked.requested_schema
    assert schema["required"] == ["confirm"]
    assert schema["properties"]["confirm"]["type"] == "boolean"
    assert "person" in listed["run_job"].description  # type: ignore[operator]
    assert "elicitation" in listed["send_email"].description  # type: ignore[operator]


async def test_an_accepted_email_is_delivered_once(setup: Setup) -> None:
    person = Person()
    async with connect(asking(setup), setup.root, person) as mcp:
        sent = await mcp.ok(
            "send_email",
            to="Someone <someone@example.com>",
            subject="Build 42 is ready",
            body="Attached.\n",
            attachments=["job/files/report.pdf"],
            cc=["a@example.com", "b@example.com", "c@example.com"],
            bcc=["d@example.com", "e@example.com"],
        )
    (received,) = setup.mail_server.messages
    assert parse(received.data)["Subject"] == "Build 42 is ready"
    assert len(received.rcpt_tos) == 6
    assert sent["remaining_messages"] == 19
    (message,) = person.messages
    assert message.split("\n") == [
        "Send 1 message?",
        "From: Agent Bot <agent@example.org>",
        "Subject: Build 42 is ready",
        "Recipients: 6: someone@example.com, a@example.com, b@example.com, c@example.com, "
        "d@example.com and 1 more",
        "Attachments: report.pdf",
    ]


@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_or_cancelled_run_sends_nothing_and_leaves_the_cap(
    setup: Setup, action: str
) -> None:
    person = Person(action=action)  # type: ignore[arg-type]
    async with connect(asking(setup, BATCHMAIL_MCP_MAX_MESSAGES="3"), setup.root, person) as mcp:
        sent, refusal = await run(mcp)
        assert setup.jobs_server.messages == []
        assert setup.jobs_server.connections == 0
        left = (await mcp.ok("validate_job", path=JOB))["remaining_messages"]
        person.action = "accept"
        again, status = await run(mcp)  # the whole cap is still there for it
    assert not sent
    assert "\n" not in refusal
    assert f"the person {action}" in refusal
    assert "nothing was sent" in refusal
    assert left == 3
    assert (again, status) == (True, "completed")
    assert len(setup.jobs_server.messages) == 3
    assert len(person.asked) == 2


@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_or_cancelled_email_sends_nothing_and_leaves_the_cap(
    setup: Setup, action: str
) -> None:
    person = Person(action=action)  # type: ignore[arg-type]
    env = asking(setup, BATCHMAIL_MCP_MAX_MESSAGES="1")
    async with connect(env, setup.root, person) as mcp:
        refusal = await mcp.refused("send_email", to="user1@example.com", subject="A", body="a\n")
        assert setup.mail_server.connections == 0
        person.action = "accept"
        sent = await mcp.ok("send_email", to="user1@example.com", subject="B", body="b\n")
    assert f"the person {action}" in refusal
    assert "nothing counted against the cap" in refusal
    assert sent["remaining_messages"] == 0
    (received,) = setup.mail_server.messages
    assert parse(received.data)["Subject"] == "B"


async def test_an_accept_without_the_confirm_box_sends_nothing(setup: Setup) -> None:
    person = Person(confirm=False)
    async with connect(asking(setup), setup.root, person) as mcp:
        refusal = await mcp.refused("send_email", to="user1@example.com", subject="A", body="a\n")
        sent, run_refusal = await run(mcp)
    assert "did not confirm" in refusal
    assert not sent
    assert "did not confirm" in run_refusal
    assert setup.mail_server.connections == 0
    assert setup.jobs_server.connections == 0


async def test_an_answer_that_does_not_fit_or_a_failing_client_sends_nothing(
    setup: Setup,
) -> None:
    async def garbled(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": "perhaps"})

    async def broken(context: ClientRequestContext, params: ElicitRequestParams) -> ErrorData:
        return ErrorData(code=-32603, message="the form could not be shown")

    errors = []
    for callback in (garbled, broken):
        async with connect(asking(setup), setup.root, callback) as mcp:  # type: ignore[arg-type]
            errors.append(
                await mcp.refused("send_email", to="user1@example.com", subject="A", body="a\n")
            )
            errors.append((await run(mcp))[1])
            left = (await mcp.ok("validate_job", path=JOB))["remaining_messages"]
            assert left == 20
    for error in errors[:2]:
        assert "did not fit its form (a boolean 'confirm')" in error
    for error in errors[2:]:
        assert "could not ask the person (the form could not be shown)" in error
    for error in errors:
        assert "\n" not in error
        assert "nothing was sent" in error
    assert setup.mail_server.connections == 0
    assert setup.jobs_server.connections == 0


async def test_a_client_that_cannot_ask_is_refused_and_nothing_is_sent(setup: Setup) -> None:
    async with connect(asking(setup), setup.root) as mcp:  # no elicitation callback
        refusal = await mcp.refused("send_email", to="user1@example.com", subject="A", body="a\n")
        sent, run_refusal = await run(mcp)
        left = (await mcp.ok("validate_job", path=JOB))["remaining_messages"]
    for line in (refusal, run_refusal):
        assert "does not support elicitation" in line
        assert "BATCHMAIL_MCP_CONFIRM=elicit" in line
        assert "nothing was sent" in line
    assert not sent
    assert left == 20
    assert setup.mail_server.connections == 0
    assert setup.jobs_server.connections == 0


async def test_the_other_gates_come_first_and_nobody_is_asked_in_vain(setup: Setup) -> None:
    person = Person()
    env = asking(setup, BATCHMAIL_MCP_ALLOW="user1@example.com, user2@example.com")
    async with connect(env, setup.root, person) as mcp:
        outsider = await mcp.refused("send_email", to="x@elsewhere.org", subject="A", body="a\n")
        forged = await mcp.refused("run_job", path=JOB, token="0" * 64)
        sent, not_allowed = await run(mcp)
    assert "not in the allowlist" in outsider
    assert "changed since preview_job" in forged
    assert not sent
    assert "user3@example.com" in not_allowed
    assert person.asked == []
    assert setup.mail_server.connections == 0
    assert setup.jobs_server.connections == 0


async def test_without_the_setting_nobody_is_asked(setup: Setup) -> None:
    person = Person(action="decline")
    async with connect(setup.env, setup.root, person) as mcp:
        await mcp.ok("send_email", to="user1@example.com", subject="A", body="a\n")
        listed = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
    assert person.asked == []
    assert len(setup.mail_server.messages) == 1
    assert "elicitation" not in listed["send_email"].description  # type: ignore[operator]


async def test_the_question_carries_data_on_its_own_lines_and_no_secret(setup: Setup) -> None:
    """Recipient data and arguments cannot add lines to the question or hide in control
    characters, and a secret value never reaches it."""
    token = PASSWORD[::-1]
    make_job(
        setup.root / "odd",
        setup.jobs_server.port,
        subject="{{ note }}",
        recipients=[
            {
                "email": "user1@example.com",
                "name": "U",
                "team": "t",
                "note": "Hi\x1b[2J\u202eAccept: yes\x07",
            }
        ],
    )
    person = Person(action="decline")
    async with connect(asking(setup, DEPLOY_API_TOKEN=token), setup.root, person) as mcp:
        await run(mcp, "odd/job.yaml")
        await mcp.refused(
            "send_email", to="user1@example.com", subject=f"Key {token}\x1b[31m", body="x\n"
        )
        assert not any(token in text for text in mcp.seen)
    odd, secret = person.messages
    assert odd.split("\n")[2] == "Subject: Hi [2J Accept: yes"
    assert secret.split("\n")[2] == f"Subject: Key {REDACTED} [31m"
    for message in (odd, secret):
        assert len(message.split("\n")) == 5
        assert not any(unicodedata.category(c) in {"Cc", "Cf"} for c in message if c != "\n")
        assert PASSWORD not in message
        assert token not in message
    assert setup.jobs_server.connections == 0
    assert setup.mail_server.connections == 0


TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@given(
    what=TEXT,
    sender=TEXT,
    subject=TEXT,
    recipients=st.lists(TEXT, max_size=8),
    attachments=st.lists(TEXT, max_size=3),
)
def test_every_value_stays_on_its_line(
    what: str, sender: str, subject: str, recipients: list[str], attachments: list[str]
) -> None:
    outline = Outline(what, sender, subject, recipients, attachments, varies=True)
    lines = outline.question(lambda text: text).split("\n")
    assert [line.split(" ", 1)[0] for line in lines] == [
        "Send",
        "From:",
        "Subject:",
        "Recipients:",
        "Attachments:",
    ]
    assert lines[3].startswith(f"Recipients: {len(recipients)}:")
    if len(recipients) > SAMPLE:
        assert lines[3].endswith(f" and {len(recipients) - SAMPLE} more")
    for line in lines:
        assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in line)


def test_an_unknown_mode_stops_the_server_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "BATCHMAIL_MCP_CONFIRM": "yes", "BATCHMAIL_MCP_ROOT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, *SERVER],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "BATCHMAIL_MCP_CONFIRM" in done.stderr
    assert "'elicit'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_client_of_the_newest_protocol_is_asked_within_the_call(setup: Setup) -> None:
    """The SDK's high-level `Client` negotiates the newest protocol, where the question comes
    back as the call's result and the client retries the call with the answer."""
    env = {"PYTHONPATH": str(REPO), **asking(setup, BATCHMAIL_MCP_MAX_MESSAGES="4")}
    params = StdioServerParameters(command=sys.executable, args=SERVER, env=env, cwd=setup.root)
    person = Person(action="decline")
    email = {"to": "user1@example.com", "subject": "B", "body": "b\n"}
    async with Client(params, elicitation_callback=person) as client:
        version = client.session.protocol_version
        token = (await client.call_tool("preview_job", {"path": JOB})).structured_content
        assert isinstance(token, dict)
        run_job = {"path": JOB, "token": token["token"]}
        declined = [
            await client.call_tool(tool, args)
            for tool, args in [("send_email", email), ("run_job", run_job)]
        ]
        assert setup.mail_server.connections == setup.jobs_server.connections == 0
        person.action = "accept"
        accepted = [
            await client.call_tool(tool, args)
            for tool, args in [("send_email", email), ("run_job", run_job)]
        ]
    async with Client(params) as unable:  # declares no elicitation
        refused = await unable.call_tool("send_email", email)
    assert version == "2026-07-28"
    for result in declined:
        assert result.is_error
        assert result.structured_content == {
            "error": "the person declined the sending; nothing was sent and nothing counted "
            "against the cap"
        }
    assert [result.is_error for result in accepted] == [False, False]
    assert accepted[1].structured_content["remaining_messages"] == 0  # type: ignore[index]
    assert len(person.asked) == 4
    assert "Recipients: 3: user1@example.com" in person.messages[-1]
    assert refused.is_error
    assert "does not support elicitation" in refused.structured_content["error"]  # type: ignore[index]
    assert len(setup.mail_server.messages) == 1
    assert len(setup.jobs_server.messages) == 3
    assert not any(PASSWORD in message for message in person.messages)
