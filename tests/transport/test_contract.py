"""The transport contract, run against every transport: SMTP (a real server on 127.0.0.1), the
folder of a dry run, and memory. Each test reads back what the transport delivered: from the
server's inbox, the `.eml` file, the memory list."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from smtpserver import Script, SmtpServerFactory
from support import make_job

from batchmail.load.addresses import parse_mailbox
from batchmail.load.job import load_job
from batchmail.transport.contract import Envelope, Outcome, Route, Transport
from batchmail.transport.folder import FolderTransport
from batchmail.transport.memory import Kept, MemoryTransport
from batchmail.transport.pipelining import Pipelined
from batchmail.transport.smtp import SmtpTransport

# What a transport must carry byte for byte: a line that starts with a dot (SMTP escapes it on
# the wire, RFC 5321 4.5.2), a lone dot line, 8-bit UTF-8, a long line.
DATA = (
    b"From: Reports <reports@example.com>\r\n"
    b"To: Alice <alice@example.com>\r\n"
    b"Subject: contract\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".starts with a dot\r\n"
    b".\r\n"
    b"Gr\xc3\xbc\xc3\x9fe, \xe5\xbc\xa0\xe4\xbc\x9f\r\n" + b"word " * 150 + b"\r\n"
)
SENDER = "reports@example.com"


class Harness:
    """One kind of transport, and how to read back what it delivered."""

    name: str
    delivered_state: str
    pipelined: bool = False

    def make(self, refuse: Iterable[str] = ()) -> Transport:
        raise NotImplementedError

    def received(self, outcomes: list[Outcome]) -> list[bytes]:
        """The messages as they arrived, in order."""
        raise NotImplementedError

    def envelopes(self) -> list[tuple[str, list[str]]] | None:
        """(MAIL FROM, RCPT TO) of each message, where the transport keeps them."""
        return None


class SmtpHarness(Harness):
    name, delivered_state, pipelined = "smtp", "sent", True

    def __init__(self, smtp_server: SmtpServerFactory, folder: Path):
        self.server = smtp_server(script=Script())
        self.settings = load_job(make_job(folder / "job", self.server.port)).smtp

    def make(self, refuse: Iterable[str] = ()) -> Transport:
        for address in refuse:
            self.server.script.rcpt_replies[address] = ["550 5.1.1 no such user"]
        return SmtpTransport(self.settings, None)

    def received(self, outcomes: list[Outcome]) -> list[bytes]:
        return [message.data for message in self.server.messages]

    def envelopes(self) -> list[tuple[str, list[str]]]:
        return [(m.mail_from, m.rcpt_tos) for m in self.server.messages]


class FolderHarness(Harness):
    name, delivered_state = "folder", "previewed"

    def __init__(self, folder: Path):
        self.out = folder / "out"

    def make(self, refuse: Iterable[str] = ()) -> Transport:
        assert not refuse, "a folder refuses nobody"
        return FolderTransport(self.out)

    def received(self, outcomes: list[Outcome]) -> list[bytes]:
        names = [o.response for o in outcomes if o.state == self.delivered_state]
        assert sorted(p.name for p in self.out.iterdir()) == sorted(names)
        return [(self.out / name).read_bytes() for name in names]


class MemoryHarness(Harness):
    name, delivered_state = "memory", "sent"

    def __init__(self) -> None:
        self.outbox: list[Kept] = []

    def make(self, refuse: Iterable[str] = ()) -> Transport:
        return MemoryTransport(self.outbox, refuse)

    def received(self, outcomes: list[Outcome]) -> list[bytes]:
        return [kept.data for kept in self.outbox]

    def envelopes(self) -> list[tuple[str, list[str]]]:
        return [(kept.sender, list(kept.recipients)) for kept in self.outbox]


HARNESSES: dict[str, Callable[[SmtpServerFactory, Path], Harness]] = {
    "smtp": SmtpHarness,
    "folder": lambda _, folder: FolderHarness(folder),
    "memory": lambda _, folder: MemoryHarness(),
}
REFUSING = ("smtp", "memory")


@pytest.fixture(params=list(HARNESSES))
def harness(
    request: pytest.FixtureRequest, smtp_server: SmtpServerFactory, tmp_path: Path
) -> Harness:
    return HARNESSES[request.param](smtp_server, tmp_path)


@pytest.fixture
def transport(harness: Harness) -> Iterator[Transport]:
    transport = harness.make()
    yield transport
    transport.close()


def envelope(seq: int, recipient: str, data: bytes = DATA, *, smtputf8: bool = False) -> Envelope:
    return Envelope(Route(seq, SENDER, recipient, smtputf8), data)


def test_a_message_arrives_byte_for_byte(harness: Harness, transport: Transport) -> None:
    outcome = transport.send(envelope(1, "alice@example.com"))

    assert outcome.state == harness.delivered_state
    assert harness.received([outcome]) == [DATA]
    assert harness.envelopes() in (None, [(SENDER, ["alice@example.com"])])


def test_messages_arrive_in_order_over_one_transport(
    harness: Harness, transport: Transport
) -> None:
    messages = [DATA.replace(b"contract", f"message {n}".encode()) for n in range(1, 4)]

    outcomes = [
        transport.send(envelope(n, f"user{n}@example.com", m)) for n, m in enumerate(messages, 1)
    ]

    assert [o.state for o in outcomes] == [harness.delivered_state] * 3
    assert harness.received(outcomes) == messages


def test_a_message_without_a_final_line_break_arrives_whole(
    harness: Harness, transport: Transport
) -> None:
    outcome = transport.send(envelope(1, "alice@example.com", DATA.rstrip(b"\r\n")))

    [received] = harness.received([outcome])
    # SMTP ends the content with a line break before the final dot (RFC 5321 4.1.1.4).
    assert received.rstrip(b"\r\n") == DATA.rstrip(b"\r\n")


def test_closing_twice_or_before_any_message_is_harmless(harness: Harness) -> None:
    unused = harness.make()
    unused.close()
    unused.close()

    used = harness.make()
    first = used.send(envelope(1, "alice@example.com"))
    used.close()
    used.close()
    again = used.send(envelope(2, "bob@example.com"))  # a closed transport may be used again
    used.close()

    assert [first.state, again.state] == [harness.delivered_state] * 2
    assert len(harness.received([first, again])) == 2


def test_a_non_ascii_envelope_travels_with_smtputf8(harness: Harness, transport: Transport) -> None:
    """RFC 6531: a non-ASCII local part goes as written; a server must offer SMTPUTF8."""
    outcome = transport.send(envelope(1, "josé@bücher.example", smtputf8=True))

    assert outcome.state == harness.delivered_state
    assert harness.received([outcome]) == [DATA]
    assert harness.envelopes() in (None, [(SENDER, ["josé@bücher.example"])])
    if harness.name == "smtp":
        assert isinstance(harness, SmtpHarness)
        assert "SMTPUTF8" in harness.server.messages[0].mail_options
    if harness.name == "folder":
        assert outcome.response == "000001-josé@bücher.example.eml"
    if harness.name == "memory":
        assert isinstance(harness, MemoryHarness)
        assert harness.outbox[0].smtputf8


def test_smtp_refuses_a_non_ascii_envelope_when_the_server_lacks_smtputf8(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    harness = SmtpHarness(smtp_server, tmp_path)
    harness.server.script.smtputf8 = False
    transport = harness.make()

    outcome = transport.send(envelope(1, "josé@bücher.example", smtputf8=True))
    transport.close()

    assert (outcome.state, outcome.code) == ("failed", None)
    assert "does not offer SMTPUTF8" in outcome.response
    assert harness.server.messages == []


@pytest.mark.parametrize("harness", REFUSING, indirect=True)
def test_a_refused_recipient_is_a_permanent_failure_and_the_next_one_goes(
    harness: Harness,
) -> None:
    transport = harness.make(refuse=["nobody@example.com"])

    refused = transport.send(envelope(1, "nobody@example.com"))
    accepted = transport.send(envelope(2, "alice@example.com"))
    transport.close()

    assert refused.state == "failed"
    assert refused.code == 550
    assert accepted.state == harness.delivered_state
    assert harness.envelopes() == [(SENDER, ["alice@example.com"])]


def test_only_smtp_has_the_pipelining_extension(harness: Harness, transport: Transport) -> None:
    assert isinstance(transport, Pipelined) == harness.pipelined


def test_memory_refuses_an_idn_address_in_either_form() -> None:
    outbox: list[Kept] = []
    transport = MemoryTransport(outbox, refuse=["Idn@Bücher.example"])

    outcome = transport.send(envelope(1, "Idn@xn--bcher-kva.example"))

    assert (outcome.state, outcome.code) == ("failed", 550)
    assert outbox == []


def test_smtp_names_the_non_ascii_sender_when_the_server_lacks_smtputf8(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    harness = SmtpHarness(smtp_server, tmp_path)
    harness.server.script.smtputf8 = False
    transport = harness.make()

    route = Route(1, "张伟@example.com", "alice@example.com", smtputf8=True)
    outcome = transport.send(Envelope(route, DATA))
    transport.close()

    assert (outcome.state, outcome.code) == ("failed", None)
    assert "does not offer SMTPUTF8" in outcome.response
    assert "张伟@example.com" in outcome.response
    assert "alice@example.com" not in outcome.response


# --- copies of a message (cc, bcc): further envelope recipients of the same transaction ---

COPIES = ("cc@example.com", "bcc@example.org")


def test_copies_are_envelope_recipients_of_the_one_message(
    harness: Harness, transport: Transport
) -> None:
    route = Route(1, SENDER, "alice@example.com", copies=COPIES)

    outcome = transport.send(Envelope(route, DATA))

    assert (outcome.state, outcome.refused) == (harness.delivered_state, ())
    assert harness.received([outcome]) == [DATA]  # one message, whatever the recipients
    assert harness.envelopes() in (None, [(SENDER, ["alice@example.com", *COPIES])])


@pytest.mark.parametrize("harness", REFUSING, indirect=True)
def test_a_refused_copy_is_listed_and_the_message_goes_to_the_others(harness: Harness) -> None:
    transport = harness.make(refuse=["cc@example.com"])

    outcome = transport.send(Envelope(Route(1, SENDER, "alice@example.com", copies=COPIES), DATA))
    transport.close()

    assert outcome.state == harness.delivered_state
    assert [(r.address, r.code) for r in outcome.refused] == [("cc@example.com", 550)]
    assert outcome.refused[0].response
    assert harness.envelopes() == [(SENDER, ["alice@example.com", "bcc@example.org"])]


@pytest.mark.parametrize("harness", REFUSING, indirect=True)
def test_a_refused_primary_recipient_sends_the_message_to_none_of_its_copies(
    harness: Harness,
) -> None:
    transport = harness.make(refuse=["nobody@example.com"])

    route = Route(1, SENDER, "nobody@example.com", copies=COPIES)
    refused = transport.send(Envelope(route, DATA))
    accepted = transport.send(envelope(2, "alice@example.com"))
    transport.close()

    assert (refused.state, refused.code) == ("failed", 550)
    assert accepted.state == harness.delivered_state
    assert harness.envelopes() == [(SENDER, ["alice@example.com"])]


@pytest.mark.parametrize("harness", REFUSING, indirect=True)
def test_a_copies_only_route_goes_to_the_copies_the_server_accepts(harness: Harness) -> None:
    """A copy's retry: the primary recipient already has the message."""
    transport = harness.make(refuse=["cc@example.com"])

    both = Route(1, SENDER, "alice@example.com", copies=COPIES, copies_only=True)
    sent = transport.send(Envelope(both, DATA))
    lone = Route(2, SENDER, "alice@example.com", copies=COPIES[:1], copies_only=True)
    refused = transport.send(Envelope(lone, DATA))
    transport.close()

    assert sent.state == harness.delivered_state
    assert [(r.address, r.code) for r in sent.refused] == [("cc@example.com", 550)]
    assert (refused.state, refused.code) == ("failed", 550)
    assert [r.address for r in refused.refused] == ["cc@example.com"]
    assert harness.envelopes() == [(SENDER, ["bcc@example.org"])]


def test_a_non_ascii_copy_makes_the_envelope_smtputf8() -> None:
    sender, primary = parse_mailbox(SENDER), parse_mailbox("alice@example.com")
    copy = parse_mailbox("josé@bücher.example")

    assert Route.between(1, sender, primary, [copy]).smtputf8
    assert Route.between(1, sender, primary, [copy]).copies == ("josé@bücher.example",)
    only_ascii = Route.between(1, sender, parse_mailbox("josé@bücher.example"), [primary])
    assert only_ascii.smtputf8
    retry = Route.between(1, sender, copy, [primary], copies_only=True)
    assert not retry.smtputf8  # the primary is not in a copies-only envelope
    assert retry.recipients == ("alice@example.com",)
