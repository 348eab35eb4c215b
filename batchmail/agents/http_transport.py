"""`batchmail mcp --http HOST:PORT`: the SDK's Streamable HTTP transport at `/mcp`, served by
uvicorn, behind a bearer token that every request must carry.

The token is compared in constant time and never logged; a request without it gets 401 and
reaches nothing else. On a loopback address the SDK's DNS-rebinding protection (the Host and
Origin headers checked) is on, so a web page cannot reach the server through a name it controls.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import sys
from collections.abc import Mapping
from typing import Any

from msgspec import Struct
from starlette.types import ASGIApp, Receive, Scope, Send

from batchmail.agents.policy import PolicyError
from batchmail.errors import EXIT_CONNECT, EXIT_OK

ENV_TOKEN = "BATCHMAIL_MCP_TOKEN"  # noqa: S105 (a name, not a token)
MIN_TOKEN_LENGTH = 16
ENDPOINT = "/mcp"
SHUTDOWN_GRACE = 3  # seconds for open streams to end on SIGTERM / Ctrl-C
_UNAUTHORIZED = b"401 Unauthorized: send the header Authorization: Bearer <BATCHMAIL_MCP_TOKEN>\n"


class Listen(Struct, frozen=True):
    host: str  # an IP address (without brackets) or a host name
    port: int
    token: str

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __repr__(self) -> str:  # never the token, wherever the record ends up
        return f"Listen({self.shown})"


def listen_settings(given: str, environ: Mapping[str, str]) -> Listen:
    """`--http HOST:PORT` and the token; a PolicyError (one line) for either wrong."""
    host, port = _address(given)
    token = environ.get(ENV_TOKEN, "")
    if not token.strip():
        raise PolicyError(
            f"--http needs a bearer token in {ENV_TOKEN} (e.g. from `openssl rand -hex 32`); "
            "refusing to serve without one"
        )
    if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
        raise PolicyError(
            f"{ENV_TOKEN} is too short to guard a server ({len(token.strip())} characters, "
            f"at least {MIN_TOKEN_LENGTH}) or has spaces around it; use e.g. `openssl rand -hex 32`"
        )
    return Listen(host, port, token)


def _address(given: str) -> tuple[str, int]:
    shape = "--http wants HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765"
    host, colon, port_text = given.strip().rpartition(":")
    if not colon or not host:
        raise PolicyError(f"{shape}; got {given!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise PolicyError(f"--http: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise PolicyError(
            f"--http: write an IPv6 address in brackets, e.g. [::1]:8765; got {given!r}"
        )
    elif not all(part.isalnum() or part == "" for part in host.replace("-", ".").split(".")):
        raise PolicyError(f"--http: {host!r} is neither an IP address nor a host name")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PolicyError(f"--http: the port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


class BearerGate:
    """ASGI middleware: a request without `Authorization: Bearer <token>` gets 401 and goes no
    further (RFC 6750 3)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._carries_token(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        given = any(name == b"authorization" for name, _ in scope["headers"])
        challenge = b'Bearer realm="batchmail"' + (b', error="invalid_token"' if given else b"")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", challenge),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})

    def _carries_token(self, scope: Scope) -> bool:
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, credentials = values[0].strip().partition(b" ")
        matches = hmac.compare_digest(credentials.strip(), self._token)
        return scheme.lower() == b"bearer" and matches


def serve_http(server: Any, listen: Listen) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit code. `server`: the SDK's MCPServer."""
    import uvicorn  # noqa: PLC0415 - only this command's
    from mcp.server.transport_security import TransportSecuritySettings  # noqa: PLC0415

    try:
        sock = _bind(listen)
    except OSError as exc:
        print(f"batchmail mcp: cannot listen on {listen.shown}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONNECT
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=listen.loopback,
        allowed_hosts=_loopback_names(listen, "{}"),
        allowed_origins=_loopback_names(listen, "http://{}"),
    )
    app = server.streamable_http_app(
        streamable_http_path=ENDPOINT, transport_security=security, host=listen.host
    )
    url = f"http://{listen.shown}{ENDPOINT}"
    if listen.loopback:
        print(f"batchmail mcp: serving {url} (loopback only)", file=sys.stderr)
    else:
        print(
            f"batchmail mcp: serving {url} on {listen.host}, which is not a loopback address: "
            "reachable from other machines, guarded by the bearer token only, without TLS",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        BearerGate(app, listen.token),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return EXIT_OK


def _bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    return socket.create_server((listen.host, listen.port), family=family)


def _loopback_names(listen: Listen, form: str) -> list[str]:
    """What a client on this machine writes in Host or Origin for this server."""
    own = listen.shown.rpartition(":")[0]
    names = list(dict.fromkeys([own, "127.0.0.1", "localhost", "[::1]"]))
    with_port = [form.format(f"{name}:{listen.port}") for name in names]
    return with_port + ([form.format(name) for name in names] if listen.port == 80 else [])
