"""One round trip per message (RFC 2920 3.1): a message's final dot goes out with the next
message's MAIL, RCPT and DATA behind it, and the replies to both come back together. Against a
real server with faults injected, each reply is laid to the message it belongs to."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from smtpserver import Script, SmtpServer, SmtpServerFactory
from support import make_job

from batchmail.load.job import load_job
from batchmail.transport.contract import Envelope, Outcome, Route
from batchmail.transport.pipelining import InFlight
from batchmail.transport.smtp import SmtpTransport

SENDER = "reports@example.com"


def envelope(n: int) -> Envelope:
    return Envelope(route(n), f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode())


def route(n: int) -> Route:
    return Route(n, SENDER, f"user{n}@example.com")


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.01)


def mails(server: SmtpServer) -> int:
    return sum(verb == "MAIL" for _, verb in server.commands)


def in_flight(transport: SmtpTransport, n: int, following: int | None) -> InFlight:
    started = transport.start(envelope(n), route(following) if following else None)
    assert not isinstance(started, Outcome), started
    return started


def subjects(server: SmtpServer) -> list[bytes]:
    return [m.data.split(b"\r\n")[0] for m in server.messages]


def transport_for(server: SmtpServer, folder: Path) -> SmtpTransport:
    return SmtpTransport(load_job(make_job(folder, server.port)).smtp, None)


def test_a_refused_dot_fails_its_message_and_the_announced_one_still_goes(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    server = smtp_server(script=Script(data_replies={"user1@example.com": ["554 5.6.0 spam"]}))
    transport = transport_for(server, tmp_path)

    first = in_flight(transport, 1, following=2)
    # Message 2's MAIL reached the server before anything of message 1 was read back.
    until(lambda: mails(server) == 2)
    one = first.finish()
    two = in_flight(transport, 2, following=None).finish()
    transport.close()

    assert (one.state, one.code, one.response) == ("failed", 554, "5.6.0 spam")
    assert (two.state, two.code) == ("sent", 250)
    assert subjects(server) == [b"Subject: message 2"]
    assert server.connections == 1


def test_a_temporary_refusal_of_the_announced_recipient_defers_only_that_message(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    script = Script(rcpt_replies={"user2@example.com": ["451 4.3.0 try again later"]})
    server = smtp_server(script=script)
    transport = transport_for(server, tmp_path)

    one = in_flight(transport, 1, following=2).finish()
    two = transport.start(envelope(2), route(3))
    three = in_flight(transport, 3, following=None).finish()
    transport.close()

    assert (one.state, one.code) == ("sent", 250)
    assert isinstance(two, Outcome)
    assert (two.state, two.code, two.response) == ("deferred", 451, "4.3.0 try again later")
    assert (three.state, three.code) == ("sent", 250)
    assert subjects(server) == [b"Subject: message 1", b"Subject: message 3"]
    verbs = [verb for _, verb in server.commands]
    # The refused envelope's DATA went with it (pipelined), then RSET; message 3 went after.
    assert verbs == [
        "EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA",
        "QUIT",
    ]  # fmt: skip
    assert server.connections == 1


def test_a_connection_dropped_without_a_reply_to_the_dot(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    """The message's fate is unknown; the announced one, lost with the connection before the
    server read it, goes on a new session."""
    server = smtp_server(script=Script(drop_at_dot={"user1@example.com"}))
    transport = transport_for(server, tmp_path)

    one = in_flight(transport, 1, following=2).finish()
    two = in_flight(transport, 2, following=None).finish()
    transport.close()

    assert one.state == "unknown"
    assert one.response is not None
    assert one.response.startswith("no reply after the message was sent")
    assert (two.state, two.code) == ("sent", 250)
    assert subjects(server) == [b"Subject: message 2"]
    assert server.connections == 2


def test_a_connection_dropped_right_after_the_reply_to_the_dot(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    """Message 1 is delivered; message 2's announced envelope died with the connection, so it
    is sent again from MAIL on a new session, once."""
    server = smtp_server(script=Script(drop_after=1))
    transport = transport_for(server, tmp_path)

    one = in_flight(transport, 1, following=2).finish()
    two = in_flight(transport, 2, following=3).finish()
    three = in_flight(transport, 3, following=None).finish()
    transport.close()

    assert [o.state for o in (one, two, three)] == ["sent", "sent", "sent"]
    assert subjects(server) == [b"Subject: message 1", b"Subject: message 2", b"Subject: message 3"]
    assert [m.session for m in server.messages] == [1, 2, 3]
