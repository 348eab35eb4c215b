"""`api.send_one` and `api.preview`: one message outside a job, and a job looked at before it
is sent, through the library's own build and transport, against a real SMTP server."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import Script, SmtpServerFactory
from support import PASSWORD, PDF, make_job, parse

from batchmail import api
from batchmail.errors import ConnectFailure, InvalidJobError
from batchmail.load.addresses import mailbox, parse_mailbox
from batchmail.load.job import load_job
from batchmail.load.settings import SmtpSettings

SENDER = parse_mailbox("Zhāng <张伟@example.com>")


def plain(port: int, **login: str) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", port, "none", **login, timeout=5)


def test_one_message_is_built_and_sent_as_a_job_would(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    server = smtp_server()
    (tmp_path / "r.pdf").write_bytes(PDF)
    files = (api.FileToAttach(tmp_path / "r.pdf", "report.pdf"),)
    to = parse_mailbox("Bob <idn@bücher.example>")
    message = api.OneMessage(SENDER, to, "Hi", "Hello\n", "<p>Hello</p>", files)
    sent = api.send_one(message, plain(server.port), {})
    (received,) = server.messages
    assert (sent.state, sent.code) == ("sent", 250)
    assert sent.reached_the_server
    assert received.mail_from == "张伟@example.com"
    assert received.rcpt_tos == ["idn@xn--bcher-kva.example"]
    assert "SMTPUTF8" in received.mail_options
    assert parse(received.data)["Message-ID"] == sent.message_id
    assert [(a.name, a.content_type, a.size) for a in sent.attachments] == [
        ("report.pdf", "application/pdf", len(PDF))
    ]


def test_the_login_comes_from_the_variables_the_settings_name(
    smtp_server: SmtpServerFactory, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    server = smtp_server(security="starttls", auth=("agent", PASSWORD))
    settings = SmtpSettings("127.0.0.1", server.port, "starttls", "USER_VAR", "PASS_VAR", timeout=5)
    message = api.OneMessage(mailbox("a@example.com"), mailbox("b@example.com"), "Hi", "x\n")
    sent = api.send_one(message, settings, {"USER_VAR": "agent", "PASS_VAR": PASSWORD})
    assert sent.state == "sent"
    assert server.messages[0].auth_login == "agent"
    with pytest.raises(ConnectFailure, match="authentication failed"):
        api.send_one(message, settings, {"USER_VAR": "agent", "PASS_VAR": "wrong-password"})


def test_without_smtputf8_the_refusal_names_the_address_that_needs_it(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(script=Script(smtputf8=False))
    message = api.OneMessage(SENDER, mailbox("b@example.com"), "Hi", "x\n")
    sent = api.send_one(message, plain(server.port), {})
    assert sent.state == "failed"
    assert not sent.reached_the_server
    assert "SMTPUTF8" in sent.response
    assert "张伟@example.com" in sent.response
    assert server.messages == []


def test_a_message_that_cannot_be_built_opens_no_connection(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server()
    message = api.OneMessage(mailbox("a@example.com"), mailbox("b@example.com"), "Hi\nBcc: x", "")
    with pytest.raises(InvalidJobError, match="line break"):
        api.send_one(message, plain(server.port), {})
    assert server.connections == 0


def test_a_preview_shows_the_first_messages_and_every_recipient(tmp_path: Path) -> None:
    people = [
        {"email": "idn@bücher.example", "name": "Bob", "team": "books"},
        {"email": "zhang@example.com", "name": "张伟", "team": "core"},
    ]
    job = load_job(make_job(tmp_path / "job", recipients=people), {})
    preview = api.preview(job, limit=1)
    again = api.preview(job, limit=2)
    assert preview.count == 2
    assert [box.shown for box in preview.mailboxes] == [
        "Bob <idn@bücher.example>",
        "张伟 <zhang@example.com>",
    ]
    (shown,) = preview.messages
    assert (shown.to.shown, shown.subject) == ("Bob <idn@bücher.example>", "Report for Bob")
    assert [a.name for a in shown.attachments] == ["report.pdf", "chart.bin"]
    assert sorted(p.name for p in preview.attachment_files) == ["chart.bin", "report.pdf"]
    assert again.digest == preview.digest
    assert len(again.messages) == 2


def test_a_screened_preview_refuses_a_message_holding_what_the_screen_finds(
    tmp_path: Path,
) -> None:
    job = load_job(make_job(tmp_path / "job"), {})
    with pytest.raises(InvalidJobError, match="secret"):
        api.preview(job, 1, lambda *texts: any("User 2" in (t or "") for t in texts))
