"""`batchmail mcp`: batchmail as an MCP server over stdio, for LLM agents; the protocol's side.

The gates are in the tools (`tools.py`, `policy.py`), not in the client: a job runs only with the
token of a preview of exactly its current inputs, only when every recipient is in the allowlist
and the messages fit the per-process cap; files must be inside the root; secret values never
appear in a result or in a message.
"""

import os
import sys
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from batchmail import __version__
from batchmail.agents.arguments import refusal
from batchmail.agents.policy import Policy, PolicyError
from batchmail.agents.results import Results
from batchmail.agents.tools import BatchmailTools
from batchmail.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK

MAX_PREVIEW = 20

INSTRUCTIONS = (
    "Batch mail from YAML job files. To send a job: validate_job, then preview_job (shows the "
    "first messages and returns a token), then run_job with that token. The token is void when "
    "the job's inputs change: preview again. send_email sends one message. Only allowlisted "
    "recipients can be mailed, and this server sends a limited number of messages."
)

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_SENDS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
JobPath = Annotated[
    str, Field(description="the job file (YAML), relative to the server's root or absolute")
]


DESCRIPTIONS = {
    "validate_job": "Validate a batchmail job file: load it, render and build every message, "
    "send nothing. Returns the job's name and number of messages, or every problem found.",
    "preview_job": "Render a job without sending: the summary, the first `limit` messages (To, "
    "Subject, text and HTML bodies, attachments) and the token that run_job needs. The token "
    "is bound to the job's current inputs: any change to them voids it.",
    "run_job": "Send a job that preview_job showed, with the token it returned. Refused when "
    "the inputs changed since the preview, when a recipient is not allowlisted, or when the "
    "messages would exceed this server's cap. Recipients already delivered are not sent again.",
    "send_email": "Send one message from the server's fixed sender to one allowlisted "
    "recipient, with optional cc and bcc (allowlisted too), HTML body and attachments (files "
    "inside the server's root).",
    "get_report": "The JSON report of a job's latest run (give the job file) or of a report "
    "file: status, counts and every recipient's result.",
}


class _Server(MCPServer[Any]):
    """The SDK's server, refusing arguments that do not fit a tool's schema in one line."""

    def __init__(self, results: Results):
        super().__init__(
            "batchmail", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
        )
        self.results = results

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            return self.results.failure(refusal(name, exc.__cause__), {})


def build_server(tools: BatchmailTools) -> MCPServer[Any]:
    server = _Server(tools.results)
    call = tools.results.call

    @server.tool(description=DESCRIPTIONS["validate_job"], annotations=_READ_ONLY)
    def validate_job(path: JobPath) -> CallToolResult:
        return call(lambda: tools.validate(path))

    @server.tool(description=DESCRIPTIONS["preview_job"], annotations=_READ_ONLY)
    def preview_job(
        path: JobPath,
        limit: Annotated[
            int, Field(ge=1, le=MAX_PREVIEW, description=f"messages to show, 1 to {MAX_PREVIEW}")
        ] = 3,
    ) -> CallToolResult:
        return call(lambda: tools.preview(path, limit))

    @server.tool(description=DESCRIPTIONS["run_job"], annotations=_SENDS)
    def run_job(
        path: JobPath,
        token: Annotated[str, Field(description="the token preview_job returned")],
    ) -> CallToolResult:
        return call(lambda: tools.run(path, token))

    @server.tool(description=DESCRIPTIONS["send_email"], annotations=_SENDS)
    def send_email(  # noqa: PLR0917 - the tool's parameters are its schema
        to: Annotated[str, Field(description="one address, optionally 'Name <address>'")],
        subject: str,
        body: Annotated[str, Field(description="the plain-text body")],
        html: Annotated[str | None, Field(description="an optional HTML body")] = None,
        attachments: Annotated[
            list[str] | None, Field(description="paths of files inside the server's root")
        ] = None,
        cc: Annotated[
            list[str] | None, Field(description="addresses shown in the Cc header; allowlisted")
        ] = None,
        bcc: Annotated[
            list[str] | None, Field(description="addresses in no header (blind); allowlisted")
        ] = None,
    ) -> CallToolResult:
        return call(lambda: tools.send_email(to, subject, body, html, attachments, cc=cc, bcc=bcc))

    @server.tool(description=DESCRIPTIONS["get_report"], annotations=_READ_ONLY)
    def get_report(
        path: Annotated[str, Field(description="a job file, or a report's .json file")],
    ) -> CallToolResult:
        return call(lambda: tools.report(path))

    return server


def serve() -> int:
    """Run the MCP server on stdin/stdout until the client closes it; the exit code."""
    try:
        policy = Policy.from_env(os.environ)
    except PolicyError as exc:
        print(f"batchmail mcp: {exc}", file=sys.stderr)
        return EXIT_INVALID
    server = build_server(BatchmailTools(os.environ, policy))
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK
