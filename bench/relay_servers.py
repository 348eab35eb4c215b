#!/usr/bin/env python3
"""The two servers of the relay bench, each run as its own process by bench/relay.py.

    relay_servers.py sink PORT CONTROL_PORT CERT KEY
    relay_servers.py proxy PORT TARGET_PORT RTT_MS

`sink`: an SMTP server on 127.0.0.1:PORT that throws mail away. It offers STARTTLS, then
requires it and AUTH (PLAIN or LOGIN, the credentials from RELAY_BENCH_USER and
RELAY_BENCH_PASSWORD) before MAIL, and announces PIPELINING (RFC 2920): the replies to all
the commands in one read go out in one write. On CONTROL_PORT every line gets one line of JSON
back: `STATS` the counters and timestamps since the last `RESET` (time.monotonic(), comparable
across processes), `RESET` clears them.

`proxy`: listens on 127.0.0.1:PORT and forwards every connection to 127.0.0.1:TARGET_PORT,
each chunk delivered RTT_MS/2 after it was read, in each direction: a time-stamped queue per
direction (order kept, any number of chunks in flight). A new connection reaches the sink one
RTT late, as a TCP handshake would.

Both are plain asyncio protocols (no streams, no per-line tasks): cheap enough that the sink's
and the proxy's CPU time, which bench/relay.py prints, stay a small share of the client's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import time
from collections import deque

LOOPBACK = "127.0.0.1"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connects: list[float] = []
        self.authenticated: list[float] = []
        self.messages: list[float] = []  # the time each message's dot was read
        self.sessions: list[int] = []  # the session of each message (the number of its connect)
        self.recipients = 0
        self.auth_failures = 0

    def as_json(self) -> bytes:
        return json.dumps({
            "connects": self.connects, "authenticated": self.authenticated,
            "messages": self.messages, "sessions": self.sessions, "recipients": self.recipients,
            "auth_failures": self.auth_failures,
        }).encode() + b"\n"


class SinkSession(asyncio.Protocol):
    """One SMTP session; replies to a pipelined group are written together."""

    def __init__(self, sink: Sink):
        self.sink = sink
        self.buffer = bytearray()
        self.in_data = False
        self.scanned = 0
        self.tls = False
        self.user: str | None = None
        self.auth_step: str | None = None  # "plain", "login-user", "login-pass"
        self.login_user = ""
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink.stats.connects.append(time.monotonic())
        self.number = len(self.sink.stats.connects)
        transport.write(b"220 relay-bench sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.process()
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:  # None: in the TLS handshake
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def process(self) -> None:
        buf = self.buffer
        while buf:
            if self.in_data:
                # The content ends at CRLF.CRLF (RFC 5321 4.1.1.4); a dot line right after
                # the 354 ends an empty one.
                if buf.startswith(b".\r\n") and self.scanned == 0:
                    end, skip = 0, 3
                else:
                    end = buf.find(b"\r\n.\r\n", max(0, self.scanned - 4))
                    skip = 5
                if end < 0:
                    self.scanned = len(buf)
                    return
                del buf[: end + skip]
                self.scanned = 0
                self.in_data = False
                self.sink.stats.messages.append(time.monotonic())
                self.sink.stats.sessions.append(self.number)
                self.out.append(b"250 2.0.0 queued\r\n")
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self.command(line):  # STARTTLS: the rest waits for the handshake
                return

    def reply(self, text: bytes) -> None:
        self.out.append(text)

    def command(self, line: bytes) -> bool:
        if self.auth_step is not None:
            self.auth_continue(line)
            return False
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            lines = [b"relay-bench", b"PIPELINING", b"8BITMIME", b"SMTPUTF8"]
            lines.append(b"AUTH PLAIN LOGIN" if self.tls else b"STARTTLS")
            self.reply(b"".join(b"250-" + x + b"\r\n" for x in lines[:-1])
                       + b"250 " + lines[-1] + b"\r\n")
        elif verb == b"STAR" and not self.tls:
            self.reply(b"220 2.0.0 ready to start TLS\r\n")
            self.start_tls()
            return True
        elif verb == b"AUTH":
            self.auth_start(line.split())
        elif verb in (b"MAIL", b"RCPT", b"DATA") and self.user is None:
            self.reply(b"530 5.7.0 authentication required\r\n")
        elif verb == b"MAIL":
            self.reply(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            self.sink.stats.recipients += 1
            self.reply(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.reply(b"354 end data with <CR><LF>.<CR><LF>\r\n")
        elif verb in (b"RSET", b"NOOP"):
            self.reply(b"250 2.0.0 ok\r\n")
        elif verb == b"QUIT":
            self.reply(b"221 2.0.0 bye\r\n")
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return True
        else:
            self.reply(b"500 5.5.1 unknown command\r\n")
        return False

    def start_tls(self) -> None:
        self.flush()
        transport, self.transport = self.transport, None
        assert transport is not None
        transport.pause_reading()  # the ClientHello is for the TLS layer, not for us
        # RFC 3207 4.2: what the client sent behind STARTTLS, before the handshake, is dropped.
        self.buffer.clear()
        self.tls = True
        asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(transport, self, self.sink.context, server_side=True)
        except (OSError, ssl.SSLError):
            transport.close()
            return
        assert tls is not None
        self.transport = tls
        self.flush()  # replies to what came in right behind the handshake

    def auth_start(self, words: list[bytes]) -> None:
        if not self.tls:
            self.reply(b"538 5.7.11 encryption required for AUTH\r\n")
            return
        mechanism = words[1].upper() if len(words) > 1 else b""
        if mechanism == b"PLAIN" and len(words) > 2:
            self.check_plain(words[2])
        elif mechanism == b"PLAIN":
            self.auth_step = "plain"
            self.reply(b"334 \r\n")
        elif mechanism == b"LOGIN" and len(words) > 2:
            self.login_user = base64.b64decode(words[2]).decode("utf-8", "replace")
            self.auth_step = "login-pass"
            self.reply(b"334 UGFzc3dvcmQ6\r\n")
        elif mechanism == b"LOGIN":
            self.auth_step = "login-user"
            self.reply(b"334 VXNlcm5hbWU6\r\n")
        else:
            self.reply(b"504 5.5.4 mechanism not supported\r\n")

    def auth_continue(self, line: bytes) -> None:
        step, self.auth_step = self.auth_step, None
        try:
            if step == "plain":
                self.check_plain(line)
            elif step == "login-user":
                self.login_user = base64.b64decode(line).decode("utf-8", "replace")
                self.auth_step = "login-pass"
                self.reply(b"334 UGFzc3dvcmQ6\r\n")
            else:
                self.check(self.login_user, base64.b64decode(line).decode("utf-8", "replace"))
        except ValueError:
            self.reply(b"501 5.5.2 cannot decode\r\n")

    def check_plain(self, blob: bytes) -> None:
        try:
            _authz, user, password = base64.b64decode(blob).decode().split("\0")
        except ValueError:
            self.reply(b"501 5.5.2 cannot decode\r\n")
            return
        self.check(user, password)

    def check(self, user: str, password: str) -> None:
        if (user, password) == self.sink.credentials:
            self.user = user
            self.sink.stats.authenticated.append(time.monotonic())
            self.reply(b"235 2.7.0 authenticated\r\n")
        else:
            self.sink.stats.auth_failures += 1
            self.reply(b"535 5.7.8 authentication failed\r\n")


class Control(asyncio.Protocol):
    def __init__(self, stats: Stats):
        self.stats = stats
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for line in data.split(b"\n"):
            word = line.strip().upper()
            if word == b"STATS":
                self.transport.write(self.stats.as_json())
            elif word == b"RESET":
                self.stats.reset()
                self.transport.write(b"{}\n")


class Sink:
    def __init__(self, cert: str, key: str):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.credentials = (os.environ["RELAY_BENCH_USER"], os.environ["RELAY_BENCH_PASSWORD"])
        self.stats = Stats()


async def run_sink(port: int, control_port: int, cert: str, key: str) -> None:
    sink = Sink(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkSession(sink), LOOPBACK, port, backlog=128)
    control = await loop.create_server(lambda: Control(sink.stats), LOOPBACK, control_port)
    async with server, control:
        await asyncio.gather(server.serve_forever(), control.serve_forever())


# The event loop's timers fire up to 1 ms late (epoll waits whole milliseconds, rounded up): a
# chunk goes when it is due within half of that, so that it is early or late by 0.5 ms at most,
# on time on average, instead of 0.5 ms late on average at each of the two delays of an RTT.
_SLACK = 0.0005


class Delayed:
    """One direction of a proxied connection: chunks written `delay` seconds after they came,
    in order, however many are on their way."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float):
        self.loop = loop
        self.delay = delay
        self.queue: deque[tuple[float, bytes]] = deque()
        self.target: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False

    def push(self, data: bytes) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        self.arm()

    def close_later(self) -> None:
        self.closing = True
        self.arm()

    def arm(self) -> None:
        if self.timer is None and self.target is not None:
            due = self.queue[0][0] - _SLACK if self.queue else self.loop.time()
            self.timer = self.loop.call_at(due, self.flush)

    def flush(self) -> None:
        self.timer = None
        target = self.target
        assert target is not None
        now = self.loop.time()
        ready = []
        while self.queue and self.queue[0][0] <= now + _SLACK:
            ready.append(self.queue.popleft()[1])
        if ready and not target.is_closing():
            target.write(b"".join(ready))
        if self.queue:
            self.arm()
        elif self.closing:
            target.close()


class Upstream(asyncio.Protocol):
    def __init__(self, back: Delayed):
        self.back = back

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.back.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.back.close_later()


class Downstream(asyncio.Protocol):
    """The client's side of a proxied connection."""

    def __init__(self, target_port: int, rtt: float):
        self.target_port = target_port
        self.rtt = rtt

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        self.transport = transport
        self.forth = Delayed(loop, self.rtt / 2)
        self.back = Delayed(loop, self.rtt / 2)
        self.back.target = transport
        loop.call_later(self.rtt, lambda: loop.create_task(self.connect()))

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: Upstream(self.back), LOOPBACK, self.target_port
            )
        except OSError:
            self.transport.close()
            return
        assert isinstance(upstream, asyncio.Transport)
        self.forth.target = upstream
        if self.forth.queue or self.forth.closing:
            self.forth.arm()

    def data_received(self, data: bytes) -> None:
        self.forth.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.forth.close_later()


async def run_proxy(port: int, target_port: int, rtt_ms: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Downstream(target_port, rtt_ms / 1000), LOOPBACK, port, backlog=128
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    role, *args = argv
    if role == "sink":
        asyncio.run(run_sink(int(args[0]), int(args[1]), args[2], args[3]))
    elif role == "proxy":
        asyncio.run(run_proxy(int(args[0]), int(args[1]), float(args[2])))
    else:
        print(f"unknown role {role!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
