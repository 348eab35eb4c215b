"""Copies of a message (cc, bcc) on the SMTP wire, against a real server, pipelined (RFC 2920)
and not: one transaction, a RCPT for every envelope recipient, one DATA; the primary recipient's
reply decides the message."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import AnnouncementServer, Script, SmtpServer, SmtpServerFactory
from support import make_job

from batchmail.load.job import load_job
from batchmail.transport.contract import Envelope, Outcome, Route
from batchmail.transport.smtp import SmtpTransport

SENDER = "reports@example.com"
COPIES = ("cc@example.com", "bcc@example.org")
DATA = b"Subject: copies\r\n\r\none message\r\n"


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def transport_for(server: SmtpServer | AnnouncementServer, folder: Path) -> SmtpTransport:
    return SmtpTransport(load_job(make_job(folder, server.port)).smtp, None)


def verbs(server: SmtpServer) -> list[str]:
    return [verb for _, verb in server.commands if verb not in ("EHLO", "QUIT")]


def send(transport: SmtpTransport, route: Route) -> Outcome:
    outcome = transport.send(Envelope(route, DATA))
    transport.close()
    return outcome


def test_one_transaction_with_every_envelope_recipient(
    smtp_server: SmtpServerFactory, tmp_path: Path, pipelining: bool
) -> None:
    server = smtp_server(script=Script(pipelining=pipelining))

    outcome = send(
        transport_for(server, tmp_path), Route(1, SENDER, "alice@example.com", copies=COPIES)
    )

    assert (outcome.state, outcome.refused) == ("sent", ())
    assert verbs(server) == ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"]
    [received] = server.messages
    assert received.rcpt_tos == ["alice@example.com", *COPIES]
    assert received.data == DATA


@pytest.mark.parametrize("reply", ["550 5.1.1 no such user", "451 4.3.0 try later"])
def test_a_refused_copy_is_in_the_outcome_and_the_others_get_the_message(
    smtp_server: SmtpServerFactory, tmp_path: Path, pipelining: bool, reply: str
) -> None:
    script = Script(pipelining=pipelining, rcpt_replies={"cc@example.com": [reply]})
    server = smtp_server(script=script)

    outcome = send(
        transport_for(server, tmp_path), Route(1, SENDER, "alice@example.com", copies=COPIES)
    )

    assert (outcome.state, outcome.code) == ("sent", 250)
    [refusal] = outcome.refused
    assert (refusal.address, f"{refusal.code} {refusal.response}") == ("cc@example.com", reply)
    assert [m.rcpt_tos for m in server.messages] == [["alice@example.com", "bcc@example.org"]]


def test_a_refused_primary_recipient_means_no_message_at_all(
    smtp_server: SmtpServerFactory, tmp_path: Path, pipelining: bool
) -> None:
    script = Script(pipelining=pipelining, rcpt_replies={"nobody@example.com": ["550 5.1.1 no"]})
    server = smtp_server(script=script)
    transport = transport_for(server, tmp_path)

    refused = transport.send(Envelope(Route(1, SENDER, "nobody@example.com", copies=COPIES), DATA))
    after = send(transport, Route(2, SENDER, "alice@example.com", copies=COPIES))

    assert (refused.state, refused.code, refused.response) == ("failed", 550, "5.1.1 no")
    assert after.state == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["alice@example.com", *COPIES]]
    if pipelining:
        # DATA went in the group; the copies were accepted, so the dot would have delivered the
        # message to them: the session ended in DATA instead, and the next message opened one.
        assert server.connections == 2
    else:  # the copies are not even named, and no DATA is sent
        assert verbs(server)[:3] == ["MAIL", "RCPT", "RSET"]
        assert server.connections == 1


def test_a_refused_primary_without_accepted_copies_keeps_the_session(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    every = {a: ["550 5.1.1 no"] for a in ("nobody@example.com", *COPIES)}
    server = smtp_server(script=Script(rcpt_replies=every))
    transport = transport_for(server, tmp_path)

    refused = transport.send(Envelope(Route(1, SENDER, "nobody@example.com", copies=COPIES), DATA))
    after = send(transport, Route(2, SENDER, "alice@example.com"))

    assert (refused.state, after.state) == ("failed", "sent")
    assert server.connections == 1
    assert [m.rcpt_tos for m in server.messages] == [["alice@example.com"]]


def test_a_copies_only_route_names_only_the_copies(
    smtp_server: SmtpServerFactory, tmp_path: Path, pipelining: bool
) -> None:
    server = smtp_server(script=Script(pipelining=pipelining))

    route = Route(1, SENDER, "alice@example.com", copies=COPIES[:1], copies_only=True)
    outcome = send(transport_for(server, tmp_path), route)

    assert outcome.state == "sent"
    assert verbs(server) == ["MAIL", "RCPT", "DATA"]
    assert [m.rcpt_tos for m in server.messages] == [["cc@example.com"]]


def test_a_copies_only_route_every_copy_refused_sends_no_data(
    smtp_server: SmtpServerFactory, tmp_path: Path, pipelining: bool
) -> None:
    replies = {"cc@example.com": ["451 4.3.0 later"], "bcc@example.org": ["550 5.1.1 no"]}
    server = smtp_server(script=Script(pipelining=pipelining, rcpt_replies=replies))

    route = Route(1, SENDER, "alice@example.com", copies=COPIES, copies_only=True)
    outcome = send(transport_for(server, tmp_path), route)

    # A temporary refusal decides: the message may still go to that copy.
    assert (outcome.state, outcome.code) == ("deferred", 451)
    assert [(r.address, r.code) for r in outcome.refused] == [
        ("cc@example.com", 451),
        ("bcc@example.org", 550),
    ]
    assert server.messages == []
    if not pipelining:
        assert "DATA" not in verbs(server)


def test_the_announced_envelope_carries_its_copies(tmp_path: Path) -> None:
    """RFC 2920 3.1: the next message's MAIL, every RCPT and DATA follow the dot; their replies,
    one more per copy, are read as the next message's."""
    with AnnouncementServer() as server:
        transport = transport_for(server, tmp_path)
        first = Envelope(
            Route(1, SENDER, "a@example.com", copies=COPIES), b"Subject: 1\r\n\r\n1\r\n"
        )
        second = Envelope(
            Route(2, SENDER, "b@example.com", copies=COPIES[:1]), b"Subject: 2\r\n\r\n2\r\n"
        )
        third = Envelope(Route(3, SENDER, "c@example.com"), b"Subject: 3\r\n\r\n3\r\n")
        retry = Route(1, SENDER, "a@example.com", copies=COPIES, copies_only=True)
        fourth = Envelope(retry, b"Subject: 1\r\n\r\n1\r\n")
        outcomes = []
        for envelope, following in (
            (first, second.route),
            (second, third.route),
            (third, fourth.route),
            (fourth, None),
        ):
            started = transport.start(envelope, following)
            assert not isinstance(started, Outcome)
            outcomes.append(started.finish())
        transport.close()
        server.stop()

    assert [o.state for o in outcomes] == ["sent"] * 4
    assert server.announced == [True, True, True, False]
    assert [m.split(b"\r\n")[0] for m in server.messages] == [
        b"Subject: 1",
        b"Subject: 2",
        b"Subject: 3",
        b"Subject: 1",
    ]
    assert [v for v in server.commands if v not in ("EHLO", "QUIT")] == [
        *("MAIL", "RCPT", "RCPT", "RCPT", "DATA"),
        *("MAIL", "RCPT", "RCPT", "DATA"),
        *("MAIL", "RCPT", "DATA"),
        *("MAIL", "RCPT", "RCPT", "DATA"),  # a retry to the copies alone
    ]
    assert server.unterminated == []


def test_an_announced_envelope_with_a_refused_copy(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    script = Script(rcpt_replies={"cc@example.com": ["250 OK", "550 5.1.1 gone"]})
    server = smtp_server(script=script)
    transport = transport_for(server, tmp_path)

    first = Envelope(Route(1, SENDER, "a@example.com", copies=COPIES), DATA)
    second = Envelope(Route(2, SENDER, "b@example.com", copies=COPIES), DATA)
    started = transport.start(first, second.route)
    assert not isinstance(started, Outcome)
    one = started.finish()
    following = transport.start(second)
    assert not isinstance(following, Outcome)
    two = following.finish()
    transport.close()

    assert (one.state, one.refused) == ("sent", ())
    assert two.state == "sent"
    assert [(r.address, r.code) for r in two.refused] == [("cc@example.com", 550)]
    assert [m.rcpt_tos for m in server.messages] == [
        ["a@example.com", *COPIES],
        ["b@example.com", "bcc@example.org"],
    ]
    assert server.connections == 1
