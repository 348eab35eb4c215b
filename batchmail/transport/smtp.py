"""SMTP delivery: one session reused for many messages, TLS verified, pipelined (RFC 2920)."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from batchmail.errors import ConnectFailure
from batchmail.load.settings import SmtpSettings
from batchmail.transport.contract import Envelope, Outcome, OutcomeState, Refusal, Route
from batchmail.transport.credentials import Credentials
from batchmail.transport.pipelining import InFlight
from batchmail.transport.smtp_replies import EnvelopeReplies, Reply, reply_text

_DOT_LINE = re.compile(rb"^\.", re.MULTILINE)


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Verified TLS: the system's CAs (honouring SSL_CERT_FILE) plus the job's own ca_file."""
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailure(f"cannot load smtp.ca_file {settings.ca_file}: {exc}") from None
    return context


def classify(code: int) -> OutcomeState:
    """RFC 5321 4.2.1: 2yz done, 4yz try again later, 5yz do not repeat."""
    if 200 <= code < 300:
        return OutcomeState.SENT
    return OutcomeState.DEFERRED if 400 <= code < 500 else OutcomeState.FAILED


class SmtpTransport:
    """One SMTP session, opened lazily and reused for many messages: a `Transport` with the
    `Pipelined` extension."""

    def __init__(self, settings: SmtpSettings, credentials: Credentials | None):
        self.settings = settings
        self.credentials = credentials
        self.context = tls_context(settings) if settings.security != "none" else None
        self.conn: smtplib.SMTP | None = None
        self.sent_on_conn = 0
        # The next message whose MAIL, RCPT and DATA went out behind the last one's content
        # (RFC 2920 3.1 lets content start a group): its replies are still to be read.
        self.announced: Route | None = None
        self.failed: ConnectFailure | None = None  # of `open_ahead`, for the next `open`

    @property
    def peer(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def open(self) -> None:
        """Make sure a session is open: connect, negotiate TLS and authenticate if needed.

        Raises ConnectFailure with the reason.
        """
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise failed
        if self.conn is not None:
            return
        try:
            self.conn = self._connect()
        except ConnectFailure:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            raise self.failure(exc) from None
        self.sent_on_conn = 0

    def open_ahead(self, first: Route | None = None) -> bool:
        """Open the session before its first message, for a send loop that opens its sessions
        together: whether it opened. A failure is kept for the next `open` to raise, so that
        the loop meets it where it would have, and the server is not asked twice. `first`, the
        message the session will send first, has its envelope sent at once where the server
        allows PIPELINING, so that it costs no round trip of its own (RFC 2920 3.1)."""
        try:
            self.open()
        except ConnectFailure as exc:
            self.failed = exc
            return False
        conn = self.conn
        if first is not None and conn is not None and _can_announce(conn, first):
            try:
                conn.send(_commands(first))
            except (smtplib.SMTPException, OSError):
                self._drop()  # its first message opens a new one
                return True
            self.announced = first
        return True

    def failure(self, exc: OSError | smtplib.SMTPException) -> ConnectFailure:
        """What a failed connect, TLS handshake or AUTH means, in one line."""
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ConnectFailure(f"{self.peer}: authentication failed: {_reply(exc)}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConnectFailure(
                f"{self.peer}: TLS certificate not trusted ({exc.verify_message}); "
                "trust a private CA with smtp.ca_file or SSL_CERT_FILE"
            )
        if isinstance(exc, smtplib.SMTPConnectError):
            return ConnectFailure(f"{self.peer}: the server refused the session: {_reply(exc)}")
        if isinstance(exc, smtplib.SMTPResponseException):
            return ConnectFailure(f"{self.peer}: {_reply(exc)}")
        return ConnectFailure(f"{self.peer}: cannot connect: {_describe(exc)}")

    def _connect(self) -> smtplib.SMTP:
        conn = self.greet()
        try:
            if self.settings.security == "starttls":
                self.starttls(conn)
            self.login(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def greet(self) -> smtplib.SMTP:
        """A new session, greeted with EHLO (in TLS from the start with `security: tls`)."""
        s = self.settings
        if s.security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=s.helo, timeout=s.timeout, context=self.context
            )
        else:
            conn = smtplib.SMTP(s.host, s.port, local_hostname=s.helo, timeout=s.timeout)
        try:
            conn.ehlo()
        except BaseException:
            conn.close()
            raise
        return conn

    def login(self, conn: smtplib.SMTP) -> None:
        """AUTH with the job's credentials; nothing when it gives none."""
        if self.credentials is None:
            return
        if not conn.has_extn("auth"):
            raise ConnectFailure(
                f"{self.peer}: the server offers no AUTH, and the job gives credentials"
            )
        self.credentials.authenticate(conn)

    def starttls(self, conn: smtplib.SMTP) -> None:
        # RFC 3207: a client that requires TLS must not fall back to plaintext when it is not
        # offered; a man in the middle strips STARTTLS from EHLO exactly to cause that.
        if not conn.has_extn("starttls"):
            raise ConnectFailure(
                f"{self.peer}: the server does not offer STARTTLS; refusing to "
                "continue in plaintext (smtp.security: starttls)"
            )
        conn.starttls(context=self.context)
        conn.ehlo()

    def send(self, envelope: Envelope) -> Outcome:
        """One transaction, to the server's reply."""
        started = self.start(envelope)
        return started if isinstance(started, Outcome) else started.finish()

    def start(self, envelope: Envelope, following: Route | None = None) -> Outcome | InFlight:
        """One transaction, up to the content: what became of the message when the server
        refused it before, else the reply to await. A stale reused connection is reopened once
        and the message retried.

        `following`, the message to send next, has its envelope sent behind this message's
        content, so that each message costs one round trip instead of two."""
        if self.announced is not None and self.announced != envelope.route:
            self.close()  # the announced one is not coming: end its DATA without a message
        if self.conn is None:
            self.open()
        try:
            return self._transaction(envelope, following)
        except _StaleConnection:
            self.close()
            self.open()
            try:
                return self._transaction(envelope, following)
            except _StaleConnection as exc:
                return Outcome(OutcomeState.DEFERRED, None, f"connection lost before MAIL: {exc}")

    def _transaction(self, envelope: Envelope, following: Route | None) -> Outcome | InFlight:
        conn = self.conn
        assert conn is not None
        route = envelope.route
        if route.smtputf8 and not conn.has_extn("smtputf8"):
            # RFC 6531 3.4: without the extension a non-ASCII local part cannot be delivered.
            addresses = (route.sender, *route.recipients)
            needing = " and ".join(a for a in addresses if not a.isascii())
            return Outcome(
                OutcomeState.FAILED,
                None,
                f"the server does not offer SMTPUTF8 (RFC 6531), needed for "
                f"the non-ASCII address {needing}",
            )
        try:
            replies = self._envelope_replies(conn, route)
            return self._after_envelope(
                conn, envelope, EnvelopeReplies.of(route, replies), following
            )
        except _Dropped as exc:
            self.close()
            if exc.first_reply and self.sent_on_conn:
                raise _StaleConnection(exc.reason) from None
            return Outcome(OutcomeState.DEFERRED, None, f"connection lost: {exc.reason}")

    def _envelope_replies(self, conn: smtplib.SMTP, route: Route) -> tuple[Reply, ...]:
        """Replies to MAIL, each RCPT and DATA: in one round trip where the server allows
        PIPELINING (RFC 2920), else one command at a time, stopping at the first refusal that
        decides the message (the sender's, the primary recipient's, every copy's)."""
        group = _commands(route)
        count = len(route.recipients) + 2
        if self.announced is not None or conn.has_extn("pipelining"):
            if self.announced is None:
                _io(conn.send, group, first_reply=True)
            pipelined = tuple(_io(conn.getreply, first_reply=i == 0) for i in range(count))
            self.announced = None  # its DATA is answered: a close may QUIT again
            return pipelined
        replies: list[Reply] = []
        for line in group.splitlines(keepends=True):
            _io(conn.send, line, first_reply=not replies)
            replies.append(_io(conn.getreply, first_reply=not replies))
            if EnvelopeReplies.of(route, tuple(replies)).stops():
                break
        return tuple(replies)

    def _after_envelope(
        self,
        conn: smtplib.SMTP,
        envelope: Envelope,
        replies: EnvelopeReplies,
        following: Route | None,
    ) -> Outcome | InFlight:
        """Judge the envelope replies; send the content when the message goes."""
        goes = replies.goes()
        if replies.data is not None and replies.data[0] == 354 and not goes:
            if replies.accepted():
                # RFC 2920 3.1 lets only the dot end the data, which would deliver the message
                # to the copies the server accepted: the connection ends instead.
                self._drop()
            else:  # DATA was accepted although no recipient was: end it empty
                _io(conn.send, b".\r\n")
                _io(conn.getreply)
        mail = replies.mail
        if mail[0] != 250:
            refused = self._refused(*mail)
            return Outcome(refused.state, refused.code, refused.response, sender_refused=True)
        if not goes:
            return self._refused(*replies.deciding(), refused=replies.refused())
        if replies.data is None or replies.data[0] != 354:
            return self._refused(*(replies.data or replies.last))
        return self._content(conn, envelope, following, replies.refused())

    def _content(
        self,
        conn: smtplib.SMTP,
        envelope: Envelope,
        following: Route | None,
        refused: tuple[Refusal, ...],
    ) -> InFlight:
        payload = envelope.data
        if payload.startswith(b".") or b"\n." in payload:  # a scan, much cheaper than the regex
            payload = _DOT_LINE.sub(b"..", payload)  # RFC 5321 4.5.2 transparency
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        announced = following if following is not None and _can_announce(conn, following) else None
        _io(conn.send, payload + b".\r\n" + (_commands(announced) if announced else b""))
        self.announced = announced
        assert conn.sock is not None
        return _AwaitedReply(self, conn.sock, refused)

    def _reply_to_content(self, refused: tuple[Refusal, ...]) -> Outcome:
        conn = self.conn
        if conn is None:  # closed meanwhile
            return self._lost("the connection was closed")
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            return self._lost(_describe(exc))
        self.sent_on_conn += 1
        if code == 421:
            self.close()
        return Outcome(classify(code), code, reply_text(reply), refused=refused)

    def _lost(self, reason: str) -> Outcome:
        self._drop()  # a QUIT now would wait behind the reply that did not come
        return Outcome(OutcomeState.UNKNOWN, None, f"no reply after the message was sent: {reason}")

    def _refused(self, code: int, reply: bytes, refused: tuple[Refusal, ...] = ()) -> Outcome:
        if code == 421:  # the server is closing the session
            self.close()
        else:
            self._reset()
        return Outcome(classify(code), code, reply_text(reply), refused=refused)

    def _reset(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self.announced is not None:  # in DATA: QUIT would be message text; no dot, no message
            self._drop()
            return
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def _drop(self) -> None:
        """Close the connection without QUIT."""
        conn, self.conn, self.announced = self.conn, None, None
        if conn is not None:
            conn.close()


def _commands(route: Route) -> bytes:
    """MAIL, a RCPT for each envelope recipient and DATA, as one pipelined group (RFC 2920)."""
    option = " SMTPUTF8" if route.smtputf8 else ""
    if route.copies:
        rcpts = "".join(f"RCPT TO:<{address}>\r\n" for address in route.recipients)
    else:
        rcpts = f"RCPT TO:<{route.recipient}>\r\n"
    text = f"MAIL FROM:<{route.sender}>{option}\r\n{rcpts}DATA\r\n"
    return text.encode("utf-8" if route.smtputf8 else "ascii")


def _can_announce(conn: smtplib.SMTP, route: Route) -> bool:
    return bool(conn.has_extn("pipelining")) and (
        not route.smtputf8 or bool(conn.has_extn("smtputf8"))
    )


class _StaleConnection(Exception):
    pass


class _Dropped(Exception):
    def __init__(self, reason: str, *, first_reply: bool):
        super().__init__(reason)
        self.reason = reason
        self.first_reply = first_reply  # nothing of this transaction was answered yet


def _io(call: Callable[..., Any], *args: bytes, first_reply: bool = False) -> Any:
    """A socket step of a transaction; a broken connection becomes _Dropped."""
    try:
        return call(*args)
    except (smtplib.SMTPException, OSError) as exc:
        raise _Dropped(_describe(exc), first_reply=first_reply) from None


class _AwaitedReply:
    """The `InFlight` of an SMTP session: the reply to a message's content, on its socket."""

    __slots__ = ("_refused", "_sock", "_transport", "deadline")

    def __init__(self, transport: SmtpTransport, sock: socket.socket, refused: tuple[Refusal, ...]):
        self._transport = transport
        self._sock = sock
        self._refused = refused  # copies the server refused before the content
        self.deadline = time.monotonic() + transport.settings.timeout  # for the reply

    def fileno(self) -> int:
        return self._sock.fileno()

    def finish(self) -> Outcome:
        return self._transport._reply_to_content(self._refused)

    def abandon(self, reason: str) -> Outcome:
        return self._transport._lost(reason)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {reply_text(exc.smtp_error)}"


def _describe(exc: BaseException) -> str:
    cause = exc.__context__ if isinstance(exc, smtplib.SMTPServerDisconnected) else None
    if isinstance(exc, socket.timeout) or isinstance(cause, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
