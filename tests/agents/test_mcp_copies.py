"""`send_email` with cc and bcc: every address under the allowlist, Cc in the message, Bcc in
the envelope only; through the SDK's stdio client and a real SMTP server, and through
`api.send_one` with a transport that keeps the whole envelope."""

from __future__ import annotations

from email.utils import getaddresses

import pytest
from mcpsupport import Setup, connect
from support import make_job, parse

from batchmail import api
from batchmail.load.addresses import parse_mailbox
from batchmail.load.settings import SmtpSettings
from batchmail.transport.contract import Envelope, Outcome, OutcomeState

pytestmark = pytest.mark.anyio


async def test_cc_is_in_the_message_and_bcc_is_not(setup: Setup) -> None:
    async with connect(setup.server_env(), setup.root) as mcp:
        sent = await mcp.ok(
            "send_email",
            to="user1@example.com",
            subject="Hi",
            body="Hello\n",
            cc=["Mia Müller <mia@example.com>", "team@example.com"],
            bcc=["archive@example.com"],
        )
    (received,) = setup.mail_server.messages
    message = parse(received.data)
    assert getaddresses([str(message["Cc"])]) == [
        ("Mia Müller", "mia@example.com"),
        ("", "team@example.com"),
    ]
    assert b"archive" not in received.data
    # No Bcc field (the Message-ID's random hex may spell "bcc": look at field names only).
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert not [line for line in head.split(b"\r\n") if line.lower().startswith(b"bcc")]
    assert message["Bcc"] is None
    assert sent["cc"] == ["Mia Müller <mia@example.com>", "team@example.com"]
    assert sent["bcc"] == ["archive@example.com"]
    assert received.rcpt_tos == [
        "user1@example.com",
        "mia@example.com",
        "team@example.com",
        "archive@example.com",
    ]


@pytest.mark.parametrize("field", ["cc", "bcc"])
async def test_a_copy_outside_the_allowlist_is_refused_naming_it(setup: Setup, field: str) -> None:
    async with connect(setup.server_env(), setup.root) as mcp:
        text = await mcp.refused(
            "send_email",
            to="user1@example.com",
            subject="Hi",
            body="Hello\n",
            **{field: ["team@example.com", "boss@elsewhere.org"]},
        )
    assert "boss@elsewhere.org" in text
    assert "team@example.com" not in text
    assert "nothing was sent" in text
    assert setup.mail_server.messages == []


async def test_a_copy_that_is_no_address_is_refused_naming_the_field(setup: Setup) -> None:
    async with connect(setup.server_env(), setup.root) as mcp:
        text = await mcp.refused(
            "send_email", to="user1@example.com", subject="Hi", body="Hello\n", cc=["team@"]
        )
    assert "cc: 'team@'" in text
    assert setup.mail_server.messages == []


async def test_a_job_whose_bcc_is_not_allowlisted_cannot_run(setup: Setup) -> None:
    job = make_job(setup.root / "copied", setup.jobs_server.port, bcc="archive@elsewhere.org")
    async with connect(setup.server_env(), setup.root) as mcp:
        preview = await mcp.ok("preview_job", path=str(job))
        text = await mcp.refused("run_job", path=str(job), token=preview["token"])
    assert preview["can_run"] is False
    assert preview["not_allowed"] == ["archive@elsewhere.org"]
    assert "archive@elsewhere.org" in text
    assert setup.jobs_server.messages == []


class Recording:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def send(self, envelope: Envelope) -> Outcome:
        self.envelopes.append(envelope)
        return Outcome(OutcomeState.SENT, 250, "2.0.0 OK")

    def close(self) -> None:
        return None


def test_send_one_puts_cc_then_bcc_in_the_envelope_once_each() -> None:
    transport = Recording()
    to = parse_mailbox("user1@example.com")
    message = api.OneMessage(
        parse_mailbox("Bot <bot@example.com>"),
        to,
        "Hi",
        "Hello\n",
        cc=(parse_mailbox("Mia <mia@example.com>"), parse_mailbox("user1@EXAMPLE.COM")),
        bcc=(parse_mailbox("archive@example.com"), parse_mailbox("mia@EXAMPLE.com")),
    )
    sent = api.send_one(message, SmtpSettings("127.0.0.1", 25, "none"), {}, transport=transport)
    assert sent.state == "sent"
    (envelope,) = transport.envelopes
    # the primary recipient is never a copy of its own message; each address goes once
    assert envelope.route.copies == ("mia@example.com", "archive@example.com")
    assert envelope.route.sender == "bot@example.com"
    assert b"archive" not in envelope.data
    assert parse(envelope.data)["Cc"] is not None
