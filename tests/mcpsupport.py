"""The MCP client side of the `batchmail mcp` tests: the SDK's stdio client starts the real
server as a subprocess; a root with a job on one SMTP server, send_email's on another."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp import ClientSession
from mcp.client.session import ClientRequestContext, ElicitationFnT
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent
from smtpserver import SmtpServer, SmtpServerFactory
from support import PASSWORD, REPO, make_job

SERVER = ["-m", "batchmail", "mcp"]  # `batchmail mcp`, run by this interpreter
SENDER = "Agent Bot <agent@example.org>"


@dataclass
class Mcp:
    """A client session that keeps every tool result, to search them all for secrets."""

    session: ClientSession
    seen: list[str] = field(default_factory=list)

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        result = await self.session.call_tool(tool, arguments)
        texts = [c.text for c in result.content if isinstance(c, TextContent)]
        self.seen += [*texts, json.dumps(result.structured_content)]
        return result

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.call(tool, **arguments)
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def refused(self, tool: str, **arguments: Any) -> str:
        result = await self.call(tool, **arguments)
        assert result.is_error, result.structured_content
        (content,) = result.content
        assert isinstance(content, TextContent)
        assert "\n" not in content.text
        assert "Traceback" not in content.text
        return content.text

    def assert_no_secret(self) -> None:
        assert self.seen
        assert not any(PASSWORD in text for text in self.seen)


@dataclass
class Person:
    """The person behind the client: answers every elicitation with `action` (and `confirm` on
    an accept), and keeps what they were asked."""

    action: Literal["accept", "decline", "cancel"] = "accept"
    confirm: bool = True
    asked: list[ElicitRequestParams] = field(default_factory=list)

    async def __call__(
        self, context: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        self.asked.append(params)
        if self.action == "accept":
            return ElicitResult(action="accept", content={"confirm": self.confirm})
        return ElicitResult(action=self.action)

    @property
    def messages(self) -> list[str]:
        return [params.message for params in self.asked]


@dataclass
class Setup:
    root: Path
    job: Path
    jobs_server: SmtpServer  # the jobs' own SMTP server
    mail_server: SmtpServer  # send_email's
    env: dict[str, str]

    def server_env(self, **overrides: str | None) -> dict[str, str]:
        """The server's environment with some settings changed, or removed (None)."""
        env = {**self.env, **overrides}
        return {k: v for k, v in env.items() if v is not None}


@asynccontextmanager
async def connect(
    env: dict[str, str], cwd: Path, person: Person | ElicitationFnT | None = None
) -> AsyncIterator[Mcp]:
    """A session with the server; with `person`, the client declares elicitation and lets them
    answer (what they were asked is searched for secrets too)."""
    # The server runs this checkout's package, not whichever one the interpreter would find.
    env = {"PYTHONPATH": str(REPO), **env}
    params = StdioServerParameters(command=sys.executable, args=SERVER, env=env, cwd=cwd)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, elicitation_callback=person) as session,
    ):
        await session.initialize()
        client = Mcp(session)
        yield client
        client.seen += person.messages if isinstance(person, Person) else []
        client.assert_no_secret()


def make_setup(tmp_path: Path, smtp_server: SmtpServerFactory, ca_file: Path) -> Setup:
    """A root with a job of 3 recipients (user1..3@example.com) on a plain SMTP server, and
    send_email's settings pointing at a STARTTLS server that wants the canary password."""
    jobs_server = smtp_server()
    mail_server = smtp_server(security="starttls", auth=("agent", PASSWORD))
    root = tmp_path / "root"
    job = make_job(root / "job", jobs_server.port)
    env = {
        "BATCHMAIL_MCP_ROOT": str(root),
        "BATCHMAIL_MCP_ALLOW": "@example.com",
        "BATCHMAIL_SMTP_HOST": "127.0.0.1",
        "BATCHMAIL_SMTP_PORT": str(mail_server.port),
        "BATCHMAIL_SMTP_SECURITY": "starttls",
        "BATCHMAIL_SMTP_USERNAME": "agent",
        "BATCHMAIL_SMTP_PASSWORD": PASSWORD,
        "BATCHMAIL_FROM": SENDER,
        "SSL_CERT_FILE": str(ca_file),
    }
    return Setup(root, job, jobs_server, mail_server, env)
