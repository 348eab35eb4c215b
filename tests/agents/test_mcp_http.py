"""`batchmail mcp --http HOST:PORT`: the real server in a subprocess on a free loopback port, the
SDK's Streamable HTTP client with the bearer token, and plain HTTP requests for the refusals."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcpsupport import SENDER, SERVER, Mcp, Person, Setup
from processes import free_port
from processes import stop as stop_by_pid
from support import PASSWORD, REPO, parse

pytestmark = pytest.mark.anyio

TOKEN = "http-t0ken-3f9a1c7e5b2d8046"  # a value that must never appear in any output
JSON_RPC = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
_START_TIMEOUT = 20.0


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    output: str = ""  # stdout and stderr, once stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def start(setup: Setup, address: str, **env: str | None) -> subprocess.Popen[bytes]:
    environ = {"PYTHONPATH": str(REPO), **setup.server_env(**env)}
    return subprocess.Popen(
        [sys.executable, *SERVER, "--http", address],
        env=environ,
        cwd=setup.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Stopped by its PID; what it wrote."""
    stop_by_pid(process)
    out, err = process.communicate()
    return out.decode(errors="replace"), err.decode(errors="replace")


@contextmanager
def http_server(setup: Setup, **env: str | None) -> Iterator[Running]:
    port = free_port()
    process = start(setup, f"127.0.0.1:{port}", BATCHMAIL_MCP_TOKEN=TOKEN, **env)
    running = Running(process, port)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert process.poll() is None, stop(process)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.05)
        yield running
    finally:
        out, err = stop(process)
        running.output = out + err
        assert TOKEN not in out + err
        assert PASSWORD not in out + err


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, str]:
    """A plain HTTP POST: the status, the response's headers and its text."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**JSON_RPC, **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rpc(method: str, params: dict[str, Any], ident: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    return message if ident is None else {**message, "id": ident}


INITIALIZE = rpc(
    "initialize",
    {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
)
SEND = rpc(
    "tools/call",
    {"name": "send_email", "arguments": {"to": "user1@example.com", "subject": "S", "body": "B\n"}},
    ident=2,
)


def session_headers(url: str) -> dict[str, str]:
    """An initialized session opened with the token, as raw HTTP: its headers."""
    status, headers, _ = post(url, INITIALIZE, bearer(TOKEN))
    assert status == 200
    opened = {"Mcp-Session-Id": headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
    status, _, _ = post(
        url, rpc("notifications/initialized", {}, None), {**bearer(TOKEN), **opened}
    )
    assert status == 202
    return opened


async def test_the_sdk_client_with_the_token_lists_tools_and_sends_once(setup: Setup) -> None:
    with http_server(setup) as server:
        client = create_mcp_http_client(headers=bearer(TOKEN))
        async with (
            client,
            streamable_http_client(server.url, http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            mcp = Mcp(session)
            listed = {tool.name for tool in (await session.list_tools()).tools}
            sent = await mcp.ok(
                "send_email", to="User One <user1@example.com>", subject="Over HTTP", body="Hi\n"
            )
            mcp.assert_no_secret()
            assert not any(TOKEN in text for text in mcp.seen)
    assert {"send_email", "run_job", "save_draft"} <= listed
    assert sent["status"] == "sent"
    assert sent["remaining_messages"] == 19
    (received,) = setup.mail_server.messages
    assert received.rcpt_tos == ["user1@example.com"]
    message = parse(received.data)
    assert message["Subject"] == "Over HTTP"
    assert message["From"] == SENDER
    assert "(loopback only)" in server.output


@pytest.mark.parametrize(("action", "delivered"), [("accept", 1), ("decline", 0)])
async def test_over_http_the_person_is_asked_and_only_an_accept_sends(
    setup: Setup, action: Literal["accept", "decline"], delivered: int
) -> None:
    person = Person(action=action)
    with http_server(setup, BATCHMAIL_MCP_CONFIRM="elicit") as server:
        client = create_mcp_http_client(headers=bearer(TOKEN))
        async with (
            client,
            streamable_http_client(server.url, http_client=client) as (read, write),
            ClientSession(read, write, elicitation_callback=person) as session,
        ):
            await session.initialize()
            result = await Mcp(session).call(
                "send_email", to="user1@example.com", subject="Asked over HTTP", body="Hi\n"
            )
    (asked,) = person.messages
    assert "Subject: Asked over HTTP" in asked.split("\n")
    assert result.is_error is (action != "accept")
    assert len(setup.mail_server.messages) == delivered


@pytest.mark.parametrize("given", [{}, bearer("wrong-" + TOKEN[6:]), bearer(""), {"X": "y"}])
async def test_a_request_without_the_right_token_gets_401_and_sends_nothing(
    setup: Setup, given: dict[str, str]
) -> None:
    with http_server(setup) as server:
        opened = session_headers(server.url)
        status, headers, text = post(server.url, SEND, {**given, **opened})
        other_path = post(server.url.replace("/mcp", "/"), INITIALIZE, given)
        assert setup.mail_server.messages == []
        # The same call with the token goes through: the 401 alone stood in the way.
        sent_status, _, sent = post(server.url, SEND, {**bearer(TOKEN), **opened})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in text
    assert other_path[0] == 401
    assert sent_status == 200
    assert '"status":"sent"' in sent.replace(" ", "").replace('\\"', '"')
    assert len(setup.mail_server.messages) == 1


async def test_a_foreign_host_header_is_refused_on_loopback(setup: Setup) -> None:
    with http_server(setup) as server:
        status, _, _ = post(server.url, INITIALIZE, {**bearer(TOKEN), "Host": "evil.example"})
    assert status == 421


def test_without_a_token_the_server_exits_at_once(setup: Setup) -> None:
    port = free_port()
    began = time.monotonic()
    process = start(setup, f"127.0.0.1:{port}", BATCHMAIL_MCP_TOKEN=None)
    try:
        code = process.wait(timeout=10)
    finally:
        _, err = stop(process)
    assert time.monotonic() - began < 10
    assert code == 2
    (line,) = err.splitlines()
    assert "BATCHMAIL_MCP_TOKEN" in line
    assert "Traceback" not in err
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_a_short_token_is_refused_saying_why(setup: Setup) -> None:
    process = start(setup, f"127.0.0.1:{free_port()}", BATCHMAIL_MCP_TOKEN="short-secret")
    code = process.wait(timeout=10)
    _, err = stop(process)
    (line,) = err.splitlines()
    assert code == 2
    assert "too short" in line
    assert "at least 16" in line
    assert "short-secret" not in err


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("8765", "HOST:PORT"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:70000", "port"),
        ("::1:8765", "brackets"),
        ("[not-v6]:8765", "IPv6"),
        ("bad host:8765", "host name"),
    ],
)
def test_a_bad_address_is_one_line_and_exit_2(setup: Setup, address: str, said: str) -> None:
    process = start(setup, address, BATCHMAIL_MCP_TOKEN=TOKEN)
    code = process.wait(timeout=10)
    _, err = stop(process)
    (line,) = err.splitlines()
    assert code == 2
    assert said in line
    assert TOKEN not in err


def test_a_non_loopback_bind_says_so_in_one_line(setup: Setup) -> None:
    # 0.0.0.0 is bound, but only 127.0.0.1 is contacted.
    port = free_port()
    process = start(setup, f"0.0.0.0:{port}", BATCHMAIL_MCP_TOKEN=TOKEN)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert process.poll() is None
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        status, _, _ = post(f"http://127.0.0.1:{port}/mcp", INITIALIZE, {})
    finally:
        _, err = stop(process)
    assert status == 401
    (line,) = [text for text in err.splitlines() if "serving" in text]
    assert "not a loopback address" in line
    assert f"0.0.0.0:{port}" in line
    assert TOKEN not in err


async def test_ipv6_loopback_in_brackets(setup: Setup) -> None:
    port = free_port(host="::1")
    process = start(setup, f"[::1]:{port}", BATCHMAIL_MCP_TOKEN=TOKEN)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert process.poll() is None, stop(process)
            try:
                with socket.create_connection(("::1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        url = f"http://[::1]:{port}/mcp"
        refused = post(url, INITIALIZE, {})
        status, headers, _ = post(url, INITIALIZE, bearer(TOKEN))
    finally:
        _, err = stop(process)
    assert refused[0] == 401
    assert status == 200
    assert headers["mcp-session-id"]
    assert f"http://[::1]:{port}/mcp (loopback only)" in err


def test_an_address_in_use_is_one_line_and_exit_3(setup: Setup) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(setup, f"127.0.0.1:{port}", BATCHMAIL_MCP_TOKEN=TOKEN)
        code = process.wait(timeout=20)
    _, err = stop(process)
    (line,) = err.splitlines()
    assert code == 3
    assert line.startswith(f"batchmail mcp: cannot listen on 127.0.0.1:{port}: ")
    assert TOKEN not in err
