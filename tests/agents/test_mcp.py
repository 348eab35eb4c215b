"""`batchmail mcp` end to end: the SDK's stdio client starts the real server as a subprocess and
calls its tools; messages go to real SMTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcpsupport import SENDER, SERVER, Setup, connect
from support import PASSWORD, PDF, PNG, make_job, parse

from batchmail.agents.policy import REDACTED, Allowlist, PolicyError, Quota, Redactor
from batchmail.load.addresses import mailbox

pytestmark = pytest.mark.anyio

TOOLS = {"validate_job", "preview_job", "run_job", "send_email", "save_draft", "get_report"}


async def test_lists_the_tools_with_their_parameters(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        listed = {tool.name: tool for tool in (await mcp.session.list_tools()).tools}
        await mcp.ok("validate_job", path="job/job.yaml")
    assert set(listed) == TOOLS
    assert all(tool.description for tool in listed.values())
    assert set(listed["run_job"].input_schema["properties"]) == {"path", "token"}
    assert set(listed["send_email"].input_schema["required"]) == {"to", "subject", "body"}
    assert listed["preview_job"].annotations is not None
    assert listed["preview_job"].annotations.read_only_hint


async def test_validate_reports_the_summary_or_every_problem(setup: Setup) -> None:
    broken = make_job(setup.root / "broken", 25, rate={"bogus": 1}, smtp={"bogus": 2})
    async with connect(setup.env, setup.root) as mcp:
        summary = await mcp.ok("validate_job", path="job/job.yaml")
        error = await mcp.refused("validate_job", path=str(broken))
        details = (await mcp.call("validate_job", path=str(broken))).structured_content
    assert summary["valid"] is True
    assert summary["job"] == "job"
    assert summary["messages"] == 3
    assert summary["can_run"] is True
    assert "bogus" in error
    assert "(and 1 more problems)" in error
    assert details["exit_code"] == 2
    assert any("bogus" in line for line in details["errors"])


async def test_preview_then_run_with_the_token_delivers(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        preview = await mcp.ok("preview_job", path="job/job.yaml", limit=2)
        assert setup.jobs_server.messages == []
        run = await mcp.ok("run_job", path="job/job.yaml", token=preview["token"])
        by_job = await mcp.ok("get_report", path="job/job.yaml")
        by_path = await mcp.ok("get_report", path=run["report"])
        again = await mcp.ok("preview_job", path="job/job.yaml")
        rerun = await mcp.ok("run_job", path="job/job.yaml", token=again["token"])

    assert preview["messages"] == 3
    first, second = preview["previews"]
    assert first["to"] == "User 1 <user1@example.com>"
    assert first["subject"] == "Report for User 1"
    assert first["text"] == "Hello User 1 of core.\n"
    assert "<b>User 1</b>" in first["html"]
    assert first["attachments"] == [
        {"name": "report.pdf", "content_type": "application/pdf", "size": len(PDF)},
        {"name": "chart.bin", "content_type": "image/png", "size": len(PNG)},
    ]
    assert second["to"] == "User 2 <user2@example.com>"
    assert len(preview["token"]) == 64

    assert run["status"] == "completed"
    assert run["exit_code"] == 0
    assert run["meaning"].startswith("every recipient delivered")
    assert run["summary"]["sent"] == 3
    assert run["report"] == "job/.batchmail/job.report.json"
    assert run["remaining_messages"] == 17
    assert sorted(m.rcpt_tos[0] for m in setup.jobs_server.messages) == [
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
    ]
    for report in (by_job, by_path):
        assert report["summary"]["sent"] == 3
        assert [r["status"] for r in report["recipients"]] == ["sent"] * 3
    # Running it again converges: nothing sent, nothing counted against the cap.
    assert again["token"] == preview["token"]
    assert rerun["summary"]["skipped"] == 3
    assert rerun["remaining_messages"] == 17
    assert len(setup.jobs_server.messages) == 3


async def test_run_without_or_with_a_stale_or_forged_token_sends_nothing(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        missing = await mcp.refused("run_job", path="job/job.yaml")
        forged = await mcp.refused("run_job", path="job/job.yaml", token="0" * 64)
        token = (await mcp.ok("preview_job", path="job/job.yaml"))["token"]
        template = setup.job.parent / "templates" / "body.txt.j2"
        template.write_text("Hello {{ name }}, changed after the preview.\n", encoding="utf-8")
        stale = await mcp.refused("run_job", path="job/job.yaml", token=token)
        assert setup.jobs_server.messages == []
        assert setup.jobs_server.connections == 0

        fresh = (await mcp.ok("preview_job", path="job/job.yaml"))["token"]
        assert fresh != token
        await mcp.ok("run_job", path="job/job.yaml", token=fresh)
    assert "preview it first" in missing
    assert "changed since preview_job" in forged
    assert "changed since preview_job" in stale
    assert len(setup.jobs_server.messages) == 3
    assert b"changed after the preview" in setup.jobs_server.messages[0].data


async def test_a_token_dies_with_the_server(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        token = (await mcp.ok("preview_job", path="job/job.yaml"))["token"]
    async with connect(setup.env, setup.root) as mcp:
        await mcp.refused("run_job", path="job/job.yaml", token=token)
    assert setup.jobs_server.messages == []


async def test_send_email_delivers_with_the_fixed_from(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        sent = await mcp.ok(
            "send_email",
            to="Someone <Someone@Example.com>",
            subject="Build 42 is ready",
            body="The artifacts are attached.\n",
            html="<p>The artifacts are attached.</p>",
            attachments=["job/files/report.pdf"],
        )
    (received,) = setup.mail_server.messages
    message = parse(received.data)
    assert received.mail_from == "agent@example.org"
    assert received.rcpt_tos == ["Someone@example.com"]  # the domain in its normal form
    assert received.tls
    assert received.auth_login == "agent"
    assert message["From"] == SENDER
    assert message["Subject"] == "Build 42 is ready"
    assert message["Message-ID"] == sent["message_id"]
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == PDF
    assert sent["status"] == "sent"
    assert sent["from"] == SENDER
    assert sent["attachments"] == [
        {"name": "report.pdf", "content_type": "application/pdf", "size": len(PDF)}
    ]


async def test_recipients_outside_the_allowlist_are_refused(setup: Setup) -> None:
    env = setup.server_env(BATCHMAIL_MCP_ALLOW="USER1@example.com, user2@EXAMPLE.com")
    async with connect(env, setup.root) as mcp:
        preview = await mcp.ok("preview_job", path="job/job.yaml")
        refused = await mcp.refused("run_job", path="job/job.yaml", token=preview["token"])
        outsider = await mcp.refused(
            "send_email", to="someone@elsewhere.org", subject="Hi", body="Hello\n"
        )
    assert preview["not_allowed"] == ["user3@example.com"]
    assert preview["can_run"] is False
    assert "user3@example.com" in refused
    assert "nothing was sent" in refused
    assert "someone@elsewhere.org" in outsider
    assert setup.jobs_server.messages == []
    assert setup.jobs_server.connections == 0
    assert setup.mail_server.connections == 0


async def test_without_an_allowlist_nobody_may_be_mailed(setup: Setup) -> None:
    async with connect(setup.server_env(BATCHMAIL_MCP_ALLOW=None), setup.root) as mcp:
        await mcp.refused("send_email", to="user1@example.com", subject="Hi", body="Hello\n")
    assert setup.mail_server.connections == 0


async def test_past_the_cap_is_refused(setup: Setup) -> None:
    async with connect(setup.server_env(BATCHMAIL_MCP_MAX_MESSAGES="4"), setup.root) as mcp:
        other = make_job(setup.root / "other", setup.jobs_server.port)
        await mcp.ok("send_email", to="user9@example.com", subject="One", body="1\n")
        await mcp.ok("send_email", to="user9@example.com", subject="Two", body="2\n")
        token = (await mcp.ok("preview_job", path="job/job.yaml"))["token"]
        too_many = await mcp.refused("run_job", path="job/job.yaml", token=token)
        await mcp.ok("send_email", to="user9@example.com", subject="Three", body="3\n")
        last = await mcp.ok("send_email", to="user9@example.com", subject="Four", body="4\n")
        over = await mcp.refused("send_email", to="user9@example.com", subject="5", body="5\n")
        token = (await mcp.ok("preview_job", path=str(other)))["token"]
        await mcp.refused("run_job", path=str(other), token=token)
    assert "exceed the cap" in too_many
    assert "2 left" in too_many
    assert last["remaining_messages"] == 0
    assert "exceed the cap" in over
    assert len(setup.mail_server.messages) == 4
    assert setup.jobs_server.messages == []


async def test_files_outside_the_root_are_refused(setup: Setup, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for mailing\n", encoding="utf-8")
    (setup.root / "link.txt").symlink_to(outside)
    elsewhere = make_job(tmp_path / "elsewhere", setup.jobs_server.port)
    sneaky = make_job(setup.root / "sneaky", setup.jobs_server.port, attachments=[str(outside)])
    async with connect(setup.env, setup.root) as mcp:
        for path in (str(outside), "../secret.txt", "link.txt"):
            error = await mcp.refused(
                "send_email", to="user1@example.com", subject="Hi", body="x\n", attachments=[path]
            )
            assert "outside the server's root" in error
        job_error = await mcp.refused("preview_job", path=str(elsewhere))
        attachment_error = await mcp.refused("preview_job", path=str(sneaky))
        report_error = await mcp.refused("get_report", path="../secret.txt")
    assert "outside the server's root" in job_error
    assert "attachment" in attachment_error
    assert "outside" in attachment_error
    assert "outside the server's root" in report_error
    assert setup.mail_server.connections == 0


async def test_line_breaks_in_headers_are_refused(setup: Setup) -> None:
    async with connect(setup.env, setup.root) as mcp:
        subject = await mcp.refused(
            "send_email", to="user1@example.com", subject="Hi\r\nBcc: x@evil.test", body="x\n"
        )
        to = await mcp.refused(
            "send_email", to="user1@example.com\nBcc: x@evil.test", subject="Hi", body="x\n"
        )
    assert "line break" in subject
    assert "line break" in to
    assert setup.mail_server.connections == 0


async def test_secrets_never_reach_a_result_or_a_message(setup: Setup) -> None:
    """The canary password appears in no result (checked on every session); a job cannot pull it
    or another secret variable into a message."""
    make_job(setup.root / "own", setup.jobs_server.port, subject="${BATCHMAIL_SMTP_PASSWORD}")
    make_job(
        setup.root / "other",
        setup.jobs_server.port,
        subject="Key {{ key }}",
        vars={"key": "${DEPLOY_API_TOKEN}"},
    )
    env = setup.server_env(DEPLOY_API_TOKEN=PASSWORD[::-1])
    async with connect(env, setup.root) as mcp:
        unset = await mcp.refused("preview_job", path="own/job.yaml")
        secret = await mcp.refused("preview_job", path="other/job.yaml")
        sent = await mcp.call("send_email", to="user1@example.com", subject="Hi", body="Hello\n")
        assert not any(PASSWORD[::-1] in text for text in mcp.seen)
    assert "BATCHMAIL_SMTP_PASSWORD is not set" in unset
    assert "secret" in secret
    assert not sent.is_error
    assert setup.jobs_server.messages == []


async def test_a_failed_login_is_an_error_without_the_password(setup: Setup) -> None:
    env = setup.server_env(BATCHMAIL_SMTP_USERNAME="intruder")
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("send_email", to="user1@example.com", subject="Hi", body="x\n")
        still = await mcp.ok("validate_job", path="job/job.yaml")
    assert "authentication failed" in error
    assert still["remaining_messages"] == 20  # nothing was sent, nothing counted
    assert setup.mail_server.messages == []


def test_a_malformed_setting_stops_the_server_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "BATCHMAIL_MCP_MAX_MESSAGES": "many", "BATCHMAIL_MCP_ROOT": str(tmp_path)}
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
    assert "BATCHMAIL_MCP_MAX_MESSAGES" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_job_over_several_connections_counts_against_the_cap(setup: Setup) -> None:
    job = make_job(setup.root / "wide", setup.jobs_server.port, rate={"connections": 3})
    async with connect(setup.server_env(BATCHMAIL_MCP_MAX_MESSAGES="4"), setup.root) as mcp:
        token = (await mcp.ok("preview_job", path=str(job)))["token"]
        run = await mcp.ok("run_job", path=str(job), token=token)
        await mcp.ok("send_email", to="user1@example.com", subject="Hi", body="x\n")
        over = await mcp.refused("send_email", to="user1@example.com", subject="Hi", body="x\n")
    assert run["summary"]["sent"] == 3
    assert run["remaining_messages"] == 1
    assert "exceed the cap" in over
    assert len(setup.jobs_server.messages) == 3
    assert len(setup.mail_server.messages) == 1


# The policy's parts, without a server.


def test_the_allowlist_matches_addresses_and_exact_domains() -> None:
    allow = Allowlist.parse(" Boss@Example.org, @EXAMPLE.com ,, ")
    assert allow.allows(mailbox("boss@example.ORG"))
    assert allow.allows(mailbox("anyone@example.com"))
    assert not allow.allows(mailbox("anyone@sub.example.com"))
    assert not allow.allows(mailbox("other@example.org"))
    assert not Allowlist.parse("").allows(mailbox("anyone@example.com"))
    with pytest.raises(PolicyError, match="neither an address nor an @domain"):
        Allowlist.parse("example.com")


def test_the_quota_refuses_what_does_not_fit_whole() -> None:
    quota = Quota(3)
    quota.reserve(2)
    with pytest.raises(PolicyError, match="exceed the cap"):
        quota.reserve(2)
    quota.release(1)
    quota.reserve(2)
    assert quota.remaining == 0


def test_the_redactor_hides_secrets_in_nested_data() -> None:
    redactor = Redactor.from_env(
        {"BATCHMAIL_SMTP_PASSWORD": PASSWORD, "FEATURE_TOKEN_ON": "true", "USER": "someone"}
    )
    data = {"a": [f"x{PASSWORD}y", {"b": PASSWORD}], "n": 3, "t": "true"}
    assert redactor.data(data) == {
        "a": [f"x{REDACTED}y", {"b": REDACTED}],
        "n": 3,
        "t": "true",
    }
    assert redactor.found_in(None, f"..{PASSWORD}..")
