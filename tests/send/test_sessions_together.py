"""A send loop opens its sessions together, before the first message, rather than each when its
first message comes: one thread drives them all, and a session's set-up (connect, EHLO,
STARTTLS, EHLO, AUTH) would otherwise hold up the replies of those already sending."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import Script, SmtpServer, SmtpServerFactory
from support import PASSWORD, make_job, recipients, report_of

from batchmail.api import RunOptions, run_job
from batchmail.errors import ConnectFailure


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)


def _run(tmp_path: Path, server: SmtpServer, people: int, connections: int, **rate: object) -> int:
    smtp = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "starttls",
        "username_env": "SMTP_USERNAME",
        "password_env": "SMTP_PASSWORD",
    }
    job = make_job(
        tmp_path,
        server.port,
        smtp=smtp,
        recipients=recipients(people),
        rate={"connections": connections, **rate},
    )
    report = tmp_path / "report.json"
    result = run_job(job, RunOptions(report=report, processes=1))
    assert report_of(report)["summary"]["sent"] == len(server.messages)
    return result.exit_code


def _logged_in_before(server: SmtpServer, mails: int) -> set[int]:
    """The sessions that had sent AUTH before session 1 sent its `mails`-th MAIL."""
    commands = list(server.commands)
    first = [i for i, command in enumerate(commands) if command == (1, "MAIL")][mails - 1]
    return {session for session, verb in commands[:first] if verb == "AUTH"}


def test_every_session_is_logged_in_before_the_first_message(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    assert _run(tmp_path, server, people=12, connections=3) == 0

    assert server.connections == 3
    # Session 1 sent its first envelope once logged in, but its first message's content, and
    # the second envelope behind it, only once every session was.
    assert _logged_in_before(server, mails=2) == {1, 2, 3}
    # And each session's first envelope went out with its set-up, before any message's content.
    commands = list(server.commands)
    second = [i for i, command in enumerate(commands) if command == (1, "MAIL")][1]
    assert {session for session, verb in commands[:second] if verb == "MAIL"} == {1, 2, 3}
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        f"user{i}@example.com" for i in range(1, 13)
    )
    assert {m.session for m in server.messages} == {1, 2, 3}


def test_no_more_sessions_than_the_messages_use(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """A session starts with two messages (one sent, the next announced behind it)."""
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    assert _run(tmp_path, server, people=3, connections=4) == 0

    assert server.connections == 2
    assert len(server.messages) == 3


def test_refused_credentials_are_tried_once_and_nothing_is_sent(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    script = Script(auth_reply="535 5.7.8 Username and Password not accepted")
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=script)
    with pytest.raises(ConnectFailure, match=r"authentication failed: 535 5\.7\.8 Username"):
        _run(tmp_path, server, people=12, connections=3)

    # One session, as when the sessions opened one at a time: the client tries each mechanism
    # the server offers (PLAIN, LOGIN) on it, then stops.
    assert server.connections == 1
    assert server.auth_attempts == ["mailer", "mailer"]
    assert server.messages == []


def test_a_paced_job_opens_its_sessions_as_they_are_needed(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    assert _run(tmp_path, server, people=4, connections=3, per_second=200) == 0

    assert _logged_in_before(server, mails=1) == {1}
    assert len(server.messages) == 4


def test_a_refusal_at_the_start_shifts_the_order_and_every_message_still_goes_once(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Session 1's first message is refused, so it goes on with the next ones and session 2's
    first message is not the one whose envelope it sent ahead: that envelope ends with its
    connection (a DATA without a dot delivers nothing) and session 2 goes on on a new one."""
    script = Script(rcpt_replies={"user1@example.com": ["550 5.1.1 no such user"]})
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=script)
    assert _run(tmp_path, server, people=8, connections=2) == 1

    received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert received == [f"user{i}@example.com" for i in range(2, 9)]
    assert server.connections == 3
    entries = report_of(tmp_path / "report.json")["recipients"]
    assert [
        (e["email"], e["status"], e["smtp_code"]) for e in entries if e["status"] != "sent"
    ] == [("user1@example.com", "failed", 550)]
