"""Real SMTP servers on 127.0.0.1 for the test suite, with scriptable faults.

`SmtpServer` is aiosmtpd driven by a `Script`; `Tarpit` and `GreetingReject` misbehave
before any SMTP is spoken. Each runs its own asyncio loop in a background thread and is
used as a context manager.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from base64 import b64decode
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, cast

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

HOST = "127.0.0.1"
SERVER_NAME = "smtp.batchmail.test"
Security = Literal["none", "starttls", "tls"]

_STARTUP_TIMEOUT = 5.0
_SHUTDOWN_TIMEOUT = 5.0
_OK = "250 OK"
_AUTH_REQUIRED = "530 5.7.0 Authentication required"

log = logging.getLogger(__name__)
# The tests drop connections and fail handshakes on purpose, and aiosmtpd logs every one
# of them (plus a deprecation warning on each successful AUTH) on "mail.log". Real
# server-side failures are still collected in `errors`.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

CommandHandler = Callable[[str | None], Awaitable[None]]


@dataclass
class Received:
    """One message the server accepted (its DATA got a 2xx reply)."""

    session: int
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    tls: bool
    auth_login: str | None


@dataclass
class Script:
    """Faults to inject; tests may change any field while the server runs."""

    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    mail_reply: str | None = None
    drop_after: int | None = None
    stall_after_data: float | None = None
    stall_rcpts: set[str] | None = None
    advertise_starttls: bool = True
    smtputf8: bool = True
    pipelining: bool = True
    auth_reply: str | None = None  # refuse every AUTH with this reply (a provider's words)
    size: int | None = None  # the SIZE the EHLO reply announces (RFC 1870); None: aiosmtpd's
    # Recipients whose message's final dot is met by a dropped connection: no reply, no message.
    drop_at_dot: set[str] = field(default_factory=set)
    # Called on the server's loop just after the 2xx reply to DATA has been written, e.g. to
    # kill the client in the window between the server's acceptance and the client's record.
    after_accept: Callable[[Received], None] | None = None


def _accepts(reply: str) -> bool:
    return reply.startswith("2")


def _lookup(table: dict[str, list[str]], address: str) -> list[str] | None:
    wanted = address.lower()
    return next((v for k, v in list(table.items()) if k.lower() == wanted), None)


def _stalls(script: Script, rcpt_tos: Iterable[str]) -> bool:
    if not script.stall_after_data:
        return False
    if script.stall_rcpts is None:
        return True
    stalled = {r.lower() for r in script.stall_rcpts}
    return any(r.lower() in stalled for r in rcpt_tos)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


class _LoopServer:
    """A listener on 127.0.0.1 served by an asyncio loop in a thread of its own."""

    host: str = HOST

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.errors: list[str] = []
        self._transports: set[asyncio.BaseTransport] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started: Future[int] = Future()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        name = f"{type(self).__name__}-loop"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        try:
            self.port = self._started.result(timeout=_STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if thread.is_alive() and loop is not None and stop_event is not None:
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(_SHUTDOWN_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} did not stop within {_SHUTDOWN_TIMEOUT}s")
        self._thread = None

    def _make_protocol(self) -> asyncio.BaseProtocol:
        raise NotImplementedError

    def _listen_ssl(self) -> ssl.SSLContext | None:
        return None

    def _track(self, transport: asyncio.BaseTransport) -> None:
        self._transports.add(transport)

    def _untrack(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._transports.discard(transport)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            if not self._started.done():
                self._started.set_exception(error)
            else:
                self.errors.append(f"event loop crashed: {error!r}")

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        self._loop, self._stop_event = loop, asyncio.Event()
        listener = await loop.create_server(
            self._counted_protocol, host=HOST, port=0, ssl=self._listen_ssl()
        )
        self._started.set_result(listener.sockets[0].getsockname()[1])
        try:
            await self._stop_event.wait()
        finally:
            listener.close()
            # Server.close() leaves accepted connections open (before 3.13); abort them
            # so that sessions still held by a client cannot delay shutdown.
            for transport in list(self._transports):
                cast(asyncio.Transport, transport).abort()
            await listener.wait_closed()

    def _counted_protocol(self) -> asyncio.BaseProtocol:
        self.connections += 1
        return self._make_protocol()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        self.errors.append(f"{context.get('message')}: {error!r}")
        log.debug("%s loop error: %s", type(self).__name__, context)


class _Mute(asyncio.Protocol):
    """Sends an optional greeting, then ignores the client."""

    def __init__(self, owner: _LoopServer, greeting: bytes | None) -> None:
        self._owner = owner
        self._greeting = greeting
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._owner._track(transport)
        if self._greeting is not None:
            cast(asyncio.Transport, transport).write(self._greeting)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._untrack(self._transport)


class Tarpit(_LoopServer):
    """Accepts TCP connections and never sends a greeting."""

    def _make_protocol(self) -> asyncio.BaseProtocol:
        return _Mute(self, greeting=None)


class GreetingReject(_LoopServer):
    """Greets every connection with a 421 and hangs up."""

    greeting = b"421 4.3.2 Service not available\r\n"

    def _make_protocol(self) -> asyncio.BaseProtocol:
        return _Mute(self, greeting=self.greeting)


class _Announcements(asyncio.Protocol):
    """A minimal pipelining SMTP session that notes, for each message, whether the client had
    already sent the next message's MAIL when the message's final dot arrived."""

    def __init__(self, owner: AnnouncementServer) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._data: bytes | None = None  # the message being received, in DATA
        self._held: asyncio.TimerHandle | None = None  # the reply to a final dot, held back

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._owner._track(transport)
        self._transport.write(b"220 announcements\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._data is not None:
            self._owner.unterminated.append(self._data)
        self._owner._untrack(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if self._held is not None:  # a line after the dot, before its reply: announced
                self._release(announced=True)
            self._line(line + b"\n")

    def _line(self, line: bytes) -> None:
        assert self._transport is not None
        if self._data is not None:
            if line == b".\r\n":
                self._owner.messages.append(self._data)
                self._data = None
                self._held = asyncio.get_running_loop().call_later(
                    self._owner.wait, self._release, False
                )
            else:
                self._data += line[1:] if line.startswith(b".") else line
            return
        verb = line[:4].upper()
        self._owner.commands.append(verb.decode())
        replies = {
            b"EHLO": b"250-announcements\r\n250 PIPELINING\r\n",
            b"DATA": b"354 go on\r\n",
            b"QUIT": b"221 bye\r\n",
        }
        self._transport.write(replies.get(verb, b"250 OK\r\n"))
        if verb == b"DATA":
            self._data = b""
        elif verb == b"QUIT":
            self._transport.close()

    def _release(self, announced: bool) -> None:
        assert self._transport is not None
        assert self._held is not None
        self._held.cancel()
        self._held = None
        self._owner.announced.append(announced)
        self._transport.write(b"250 queued\r\n")


class AnnouncementServer(_LoopServer):
    """See `_Announcements`. `announced[i]`: message i's dot came with the next MAIL behind it
    (else its reply waits `wait` seconds for one); `unterminated`: sessions that ended in
    DATA, without a final dot, so without a message."""

    def __init__(self, wait: float = 0.3) -> None:
        super().__init__()
        self.wait = wait
        self.messages: list[bytes] = []
        self.announced: list[bool] = []
        self.unterminated: list[bytes] = []
        self.commands: list[str] = []

    def _make_protocol(self) -> asyncio.BaseProtocol:
        return _Announcements(self)


class _Session(SMTP):
    """One SMTP connection to an `SmtpServer`, numbered and instrumented."""

    def __init__(self, owner: SmtpServer, number: int, **smtp_kwargs: Any) -> None:
        super().__init__(owner._handler, **smtp_kwargs)
        self.owner = owner
        self.number = number
        self.accepted = 0
        self.drop_pending = False
        self._socket_transport: asyncio.Transport | None = None
        self._smtp_methods = {
            verb: self._recorded(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _recorded(self, verb: str, method: CommandHandler) -> CommandHandler:
        async def run(arg: str | None) -> None:
            self.owner._record_command(self.number, verb)
            await method(arg)

        return run

    @property
    def encrypted(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # After STARTTLS this runs again with the TLS transport; keep the socket one.
        if self._socket_transport is None:
            self._socket_transport = cast(asyncio.Transport, transport)
            self.owner._track(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._untrack(self._socket_transport)
        super().connection_lost(error)

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 (Google's and Microsoft's SASL mechanism), checked like a password: a
        refused token gets a 334 with a JSON error, which the client answers with an empty line.
        """
        try:
            user, bearer = b64decode(args[1], validate=True).split(b"\x01")[:2]
        except (IndexError, ValueError):
            await self.push("501 5.5.2 Can't decode the XOAUTH2 response")
            return AuthResult(success=False, handled=True)
        token = bearer.removeprefix(b"auth=Bearer ")
        result = self._authenticate("XOAUTH2", LoginPassword(user.removeprefix(b"user="), token))
        if result.success:
            return result
        await self.challenge_auth('{"status":"401","schemes":"bearer","scope":"mail"}')
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)
        if self.drop_pending and self._socket_transport is not None:
            # The 250 is already handed to the kernel; abort() skips QUIT/421 and TLS
            # close_notify, so the client only notices on its next command.
            self._socket_transport.abort()


class _Handler:
    """aiosmtpd hooks applying the owner's `Script`."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner
        self._rcpt_attempts: Counter[str] = Counter()
        self._data_attempts: Counter[str] = Counter()

    def _scripted(self, table: dict[str, list[str]], seen: Counter[str], address: str) -> str:
        replies = _lookup(table, address)
        if not replies:
            return _OK
        attempt = seen[address.lower()]
        seen[address.lower()] += 1
        return replies[min(attempt, len(replies) - 1)]

    async def handle_EHLO(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # A five-argument EHLO hook takes over recording the client's name.
        session.host_name = hostname
        script = self.owner.script
        server.enable_SMTPUTF8 = script.smtputf8
        lines = [line[4:] for line in responses]
        features = [f for f in lines[1:] if f.split()[0].upper() not in self._hidden(script)]
        features += [name for name, on in _optional_extensions(script) if on]
        if script.size is not None:
            features = [
                f"SIZE {script.size}" if f.upper().startswith("SIZE") else f for f in features
            ]
        texts = [lines[0], *features]
        return [f"250-{text}" for text in texts[:-1]] + [f"250 {texts[-1]}"]

    def _hidden(self, script: Script) -> set[str]:
        hidden = {"SMTPUTF8", "PIPELINING"}
        if not script.advertise_starttls:
            hidden.add("STARTTLS")
        if self.owner.auth is None:
            hidden.add("AUTH")
        return hidden

    async def handle_MAIL(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.owner.auth is not None and not session.authenticated:
            return _AUTH_REQUIRED
        reply = self.owner.script.mail_reply or _OK
        if _accepts(reply):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.owner.rcpts[address.lower()] += 1
        reply = self._scripted(self.owner.script.rcpt_replies, self._rcpt_attempts, address)
        if _accepts(reply):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: _Session, session: Session, envelope: Envelope) -> str:
        script = self.owner.script
        if envelope.rcpt_tos[0].lower() in {r.lower() for r in script.drop_at_dot}:
            if server._socket_transport is not None:
                server._socket_transport.abort()
            return "451 4.3.0 never seen: the connection is gone"
        reply = self._scripted(script.data_replies, self._data_attempts, envelope.rcpt_tos[0])
        if not _accepts(reply):
            return reply
        received = _received(server, session, envelope)
        self.owner._record_message(received)
        if script.after_accept is not None:
            asyncio.get_running_loop().call_soon(script.after_accept, received)
        server.accepted += 1
        if script.drop_after and server.accepted % script.drop_after == 0:
            server.drop_pending = True
        if _stalls(script, envelope.rcpt_tos):
            await asyncio.sleep(cast(float, script.stall_after_data))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        self.owner.errors.append(f"session error: {error!r}")
        return f"500 5.3.0 Test server error: {error!r}"

    def authenticate(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: LoginPassword,
    ) -> AuthResult:
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        self.owner.auth_attempts.append(login)
        refusal = self.owner.script.auth_reply
        if refusal is not None:
            return AuthResult(success=False, handled=False, message=refusal)
        if self.owner.auth is not None and (login, password) == self.owner.auth:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


def _optional_extensions(script: Script) -> list[tuple[str, bool]]:
    return [("PIPELINING", script.pipelining), ("SMTPUTF8", script.smtputf8)]


def _received(server: _Session, session: Session, envelope: Envelope) -> Received:
    return Received(
        session=server.number,
        mail_from=cast(str, envelope.mail_from),
        rcpt_tos=list(envelope.rcpt_tos),
        data=cast(bytes, envelope.original_content),
        mail_options=list(envelope.mail_options),
        rcpt_options=list(envelope.rcpt_options),
        tls=server.encrypted,
        auth_login=cast(str, session.auth_data) if session.authenticated else None,
    )


class SmtpServer(_LoopServer):
    """aiosmtpd on 127.0.0.1 (random port) that records everything and obeys `script`.

    `errors` collects exceptions raised while serving sessions; it is empty unless
    something went wrong server-side, or a client abandoned a TLS handshake (expected
    when a test makes the client distrust the certificate).
    """

    def __init__(
        self,
        *,
        security: Security = "none",
        cert: trustme.LeafCert | None = None,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
        script: Script | None = None,
    ) -> None:
        super().__init__()
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"unknown security {security!r}")
        if security != "none" and cert is None:
            raise ValueError(f"security={security!r} needs a cert")
        self.security = security
        self.auth = auth
        self.auth_require_tls = auth_require_tls
        self.script = script if script is not None else Script()
        self.messages: list[Received] = []
        self.commands: list[tuple[int, str]] = []
        self.auth_attempts: list[str] = []
        self.rcpts: Counter[str] = Counter()  # every RCPT TO address given, accepted or not
        self._tls = server_context(cert) if cert is not None and security != "none" else None
        self._changed = threading.Condition()
        self._handler = _Handler(self)

    def wait_for(self, n_messages: int, timeout: float = 5) -> list[Received]:
        """Block until at least `n_messages` were accepted; return them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= n_messages, timeout):
                raise TimeoutError(
                    f"{len(self.messages)} of {n_messages} messages after {timeout}s"
                )
            return list(self.messages)

    def _record_message(self, message: Received) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def _record_command(self, session: int, verb: str) -> None:
        with self._changed:
            self.commands.append((session, verb))

    def _listen_ssl(self) -> ssl.SSLContext | None:
        return self._tls if self.security == "tls" else None

    def _make_protocol(self) -> asyncio.BaseProtocol:
        return _Session(
            self,
            self.connections,
            hostname=SERVER_NAME,
            loop=asyncio.get_running_loop(),
            enable_SMTPUTF8=self.script.smtputf8,
            tls_context=self._tls if self.security == "starttls" else None,
            require_starttls=False,
            # aiosmtpd only counts STARTTLS as encryption; implicit TLS is encrypted too.
            auth_require_tls=self.auth_require_tls and self.security != "tls",
            authenticator=self._handler.authenticate,
        )


class SmtpServerFactory(Protocol):
    """Signature of the `smtp_server` fixture in conftest.py."""

    def __call__(
        self,
        security: Security = "none",
        auth: tuple[str, str] | None = None,
        script: Script | None = None,
        *,
        auth_require_tls: bool = True,
        cert: trustme.LeafCert | None = None,
    ) -> SmtpServer: ...
