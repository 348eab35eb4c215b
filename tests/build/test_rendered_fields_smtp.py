"""A job with templated cc, bcc and envelope_from against a real SMTP server: one transaction
per recipient, every envelope recipient in it, each its own MAIL FROM, and no trace of Bcc."""

from __future__ import annotations

from email.utils import getaddresses
from pathlib import Path

import pytest
from smtpserver import SmtpServerFactory
from support import cli, make_job, parse

PEOPLE = [
    {"email": "ann@example.com", "name": "Ann", "team": "core", "manager": "mia@example.com"},
    {"email": "bob@example.com", "name": "Bob", "team": "web", "manager": ""},
]


def test_each_transaction_has_every_envelope_recipient_and_its_own_sender(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(
        tmp_path,
        server.port,
        recipients=PEOPLE,
        attachments=None,
        cc="{{ manager }}",
        bcc="archive+{{ team }}@example.com",
        envelope_from="bounces+{{ email | replace('@', '=') }}@example.com",
        headers={"X-Team": "{{ team }}"},
    )
    code, _, err = cli(capsys, "run", job, "--state-dir", tmp_path / "state")
    assert code == 0, err
    received = sorted(server.messages, key=lambda m: m.rcpt_tos[0])
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [
        (
            "bounces+ann=example.com@example.com",
            ["ann@example.com", "mia@example.com", "archive+core@example.com"],
        ),
        ("bounces+bob=example.com@example.com", ["bob@example.com", "archive+web@example.com"]),
    ]
    ann, bob = (parse(m.data) for m in received)
    assert getaddresses([str(ann["Cc"])]) == [("", "mia@example.com")]
    assert bob["Cc"] is None  # an empty rendered cc is no Cc at all
    assert (ann["X-Team"], bob["X-Team"]) == ("core", "web")
    assert str(ann["From"]) == "Reports <reports@example.com>"
    for message in received:
        assert b"archive" not in message.data
        assert b"bcc" not in message.data.lower()
        assert b"bounces+" not in message.data
