"""Tests of the SMTP test server itself, driven by the standard library's smtplib."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BufferedReader
from pathlib import Path

import pytest
from smtpserver import GreetingReject, Received, Script, SmtpServer, SmtpServerFactory, Tarpit

SENDER = "sender@example.org"
ALICE = "alice@example.org"
BOB = "bob@example.org"
MESSAGE = (
    b"From: sender@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"\r\n"
    b".a line that smtplib dot-stuffs\r\n"
    b"caf\xc3\xa9 in 8 bits\r\n"
)
USER, PASSWORD = "mailer", "s3cret"


def connect(server: SmtpServer | Tarpit | GreetingReject, timeout: float = 5) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=timeout)


@contextmanager
def session(server: SmtpServer, timeout: float = 5) -> Iterator[smtplib.SMTP]:
    client = connect(server, timeout)
    try:
        client.ehlo()
        yield client
    finally:
        client.close()


def trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def ehlo_keywords(client: smtplib.SMTP) -> set[str]:
    code, text = client.ehlo()
    assert code == 250
    return {line.split()[0].upper() for line in text.decode().splitlines()[1:]}


def read_replies(stream: BufferedReader, count: int) -> list[bytes]:
    """Read `count` complete (possibly multi-line) replies; return their last lines."""
    replies: list[bytes] = []
    while len(replies) < count:
        line = stream.readline()
        assert line, "server closed the connection"
        if line[3:4] == b" ":
            replies.append(line.rstrip(b"\r\n"))
    return replies


def test_plain_delivery_records_envelope_and_exact_bytes(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    with session(server) as client:
        refused = client.sendmail(SENDER, [ALICE, BOB], MESSAGE, mail_options=["BODY=8BITMIME"])
        client.quit()

    assert refused == {}
    assert server.messages == [
        Received(
            session=1,
            mail_from=SENDER,
            rcpt_tos=[ALICE, BOB],
            data=MESSAGE,
            mail_options=[f"SIZE={len(MESSAGE)}", "BODY=8BITMIME"],
            rcpt_options=[],
            tls=False,
            auth_login=None,
        )
    ]
    verbs = ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert server.commands == [(1, verb) for verb in verbs]
    assert server.connections == 1
    assert server.errors == []


def test_pipelined_commands_are_answered_in_order(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        assert read_replies(stream, 1)[0].startswith(b"220 ")
        sock.sendall(b"EHLO client.test\r\n")
        read_replies(stream, 1)
        sock.sendall(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode()
        )
        assert [r[:3] for r in read_replies(stream, 4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert [r[:3] for r in read_replies(stream, 2)] == [b"250", b"221"]

    [message] = server.wait_for(1)
    assert (message.rcpt_tos, message.data) == ([ALICE, BOB], b"Subject: p\r\n\r\nbody\r\n")
    assert [verb for _, verb in server.commands] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


def test_starttls_with_trusted_ca_encrypts_session(
    smtp_server: SmtpServerFactory, ca_file: Path
) -> None:
    server = smtp_server("starttls")
    with session(server) as client:
        assert "STARTTLS" in ehlo_keywords(client)
        assert client.starttls(context=trusting(ca_file))[0] == 220
        assert "STARTTLS" not in ehlo_keywords(client)
        client.sendmail(SENDER, [ALICE], MESSAGE)

    [message] = server.wait_for(1)
    assert message.tls is True
    assert message.data == MESSAGE
    assert [verb for _, verb in server.commands][:3] == ["EHLO", "EHLO", "STARTTLS"]


def test_starttls_with_untrusted_certificate_fails_on_client(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server("starttls")
    with session(server) as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=ssl.create_default_context())

    assert server.messages == []
    assert (1, "STARTTLS") in server.commands


def test_implicit_tls_with_auth(smtp_server: SmtpServerFactory, ca_file: Path) -> None:
    server = smtp_server("tls", auth=(USER, PASSWORD))
    with smtplib.SMTP_SSL(
        server.host,
        server.port,
        local_hostname="client.test",
        timeout=5,
        context=trusting(ca_file),
    ) as client:
        # aiosmtpd alone would refuse AUTH here: it only counts STARTTLS as encryption.
        assert "AUTH" in ehlo_keywords(client)
        assert client.login(USER, PASSWORD)[0] == 235
        client.sendmail(SENDER, [ALICE], MESSAGE)

    [message] = server.wait_for(1)
    assert (message.tls, message.auth_login) == (True, USER)
    assert server.auth_attempts == [USER]


def test_auth_over_starttls_succeeds_and_is_required_for_mail(
    smtp_server: SmtpServerFactory, ca_file: Path
) -> None:
    server = smtp_server("starttls", auth=(USER, PASSWORD))
    with session(server) as client:
        assert "AUTH" not in ehlo_keywords(client)
        client.starttls(context=trusting(ca_file))
        client.ehlo()
        assert client.mail(SENDER) == (530, b"5.7.0 Authentication required")
        assert client.login(USER, PASSWORD) == (235, b"2.7.0 Authentication successful")
        client.sendmail(SENDER, [ALICE], MESSAGE)

    [message] = server.wait_for(1)
    assert (message.tls, message.auth_login) == (True, USER)


def test_auth_with_wrong_password_gets_535(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(auth=(USER, PASSWORD), auth_require_tls=False)
    with session(server) as client, pytest.raises(smtplib.SMTPAuthenticationError) as failed:
        client.login(USER, "wrong")

    assert failed.value.smtp_code == 535
    # smtplib tries every advertised mechanism it knows before giving up.
    assert server.auth_attempts == [USER, USER]
    assert [verb for _, verb in server.commands].count("AUTH") == 2


def test_rcpt_replies_follow_script_across_connections(smtp_server: SmtpServerFactory) -> None:
    try_later = "451 4.3.0 Try later"
    script = Script(rcpt_replies={BOB.upper(): [try_later, try_later, "250 OK"]})
    server = smtp_server(script=script)
    with session(server) as client:
        client.mail(SENDER)
        codes = [client.rcpt(BOB)[0] for _ in range(2)]
        assert client.rcpt(ALICE)[0] == 250
    with session(server) as client:
        client.mail(SENDER)
        codes += [client.rcpt(BOB)[0] for _ in range(2)]

    assert codes == [451, 451, 250, 250]


def test_rejected_data_is_not_recorded(smtp_server: SmtpServerFactory) -> None:
    script = Script(data_replies={ALICE: ["550 5.6.0 Content rejected", "250 OK"]})
    server = smtp_server(script=script)
    with session(server) as client:
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            client.sendmail(SENDER, [ALICE, BOB], MESSAGE)
        assert server.messages == []
        client.sendmail(SENDER, [ALICE, BOB], MESSAGE)

    assert (rejected.value.smtp_code, rejected.value.smtp_error) == (550, b"5.6.0 Content rejected")
    assert len(server.wait_for(1)) == 1


def test_mail_reply_refuses_sender(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(script=Script(mail_reply="550 5.7.1 Sender refused"))
    with session(server) as client:
        assert client.mail(SENDER) == (550, b"5.7.1 Sender refused")
        assert client.rcpt(ALICE)[0] == 503
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail(SENDER, [ALICE], MESSAGE)

    assert server.messages == []


def test_drop_after_closes_connection_after_nth_message(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(script=Script(drop_after=3))
    with session(server) as client:
        for _ in range(3):
            client.sendmail(SENDER, [ALICE], MESSAGE)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.mail(SENDER)
    assert len(server.messages) == 3

    with session(server) as client:
        client.sendmail(SENDER, [ALICE], MESSAGE)
    assert [m.session for m in server.wait_for(4)] == [1, 1, 1, 2]
    assert server.connections == 2


def test_stall_after_data_records_message_but_client_times_out(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(script=Script(stall_after_data=3, stall_rcpts={BOB}))
    with session(server, timeout=0.3) as client:
        client.sendmail(SENDER, [ALICE], MESSAGE)
        started = time.monotonic()
        # smtplib turns the socket timeout into SMTPServerDisconnected.
        with pytest.raises(smtplib.SMTPServerDisconnected) as lost:
            client.sendmail(SENDER, [BOB], MESSAGE)
        assert time.monotonic() - started < 2

    assert isinstance(lost.value.__context__, TimeoutError)
    assert [m.rcpt_tos for m in server.wait_for(2)] == [[ALICE], [BOB]]


def test_advertise_starttls_false_hides_it_until_changed(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server("starttls", script=Script(advertise_starttls=False))
    with session(server) as client:
        assert "STARTTLS" not in ehlo_keywords(client)
        server.script.advertise_starttls = True
        assert "STARTTLS" in ehlo_keywords(client)


def test_extensions_advertised_by_default(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    with session(server) as client:
        assert {"PIPELINING", "SMTPUTF8", "8BITMIME", "SIZE"} <= ehlo_keywords(client)
        assert "AUTH" not in ehlo_keywords(client)
        client.sendmail("jörg@example.org", ["zoë@example.org"], MESSAGE, ["SMTPUTF8"])

    [message] = server.wait_for(1)
    assert (message.mail_from, message.rcpt_tos) == ("jörg@example.org", ["zoë@example.org"])
    assert "SMTPUTF8" in message.mail_options


def test_smtputf8_and_pipelining_can_be_switched_off(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(script=Script(smtputf8=False, pipelining=False))
    with session(server) as client:
        keywords = ehlo_keywords(client)
        assert "SMTPUTF8" not in keywords
        assert "PIPELINING" not in keywords
        # smtplib.mail() refuses SMTPUTF8 itself once it is not advertised.
        reply = client.docmd("MAIL", f"FROM:<{SENDER}> SMTPUTF8")
        assert reply == (501, b"Error: SMTPUTF8 disabled")


def test_wait_for_times_out(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    with pytest.raises(TimeoutError, match="0 of 1 messages"):
        server.wait_for(1, timeout=0.05)


def test_stop_is_fast_and_leaves_no_threads_with_client_still_connected() -> None:
    threads_before = set(threading.enumerate())
    server = SmtpServer()
    with server:
        client = connect(server)
        client.ehlo()
        started = time.monotonic()
    try:
        assert time.monotonic() - started < 1
        assert set(threading.enumerate()) == threads_before
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
    assert server.errors == []


def test_tarpit_never_greets(tarpit: Tarpit) -> None:
    with pytest.raises(smtplib.SMTPServerDisconnected) as lost:
        connect(tarpit, timeout=0.3)

    assert isinstance(lost.value.__context__, TimeoutError)
    assert tarpit.connections == 1


def test_greeting_reject_gives_421(greeting_reject: GreetingReject) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as rejected:
        connect(greeting_reject)

    assert rejected.value.smtp_code == 421
    assert rejected.value.smtp_error == b"4.3.2 Service not available"
    assert greeting_reject.connections == 1
