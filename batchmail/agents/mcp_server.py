"""`batchmail mcp`: batchmail as an MCP server over stdio, for LLM agents; the protocol's side.

The gates are in the tools (`tools.py`, `policy.py`), not in the client: a job runs only with the
token of a preview of exactly its current inputs, only when every recipient is in the allowlist
and the messages fit the per-process cap; files must be inside the root; secret values never
appear in a result or in a message. With `BATCHMAIL_MCP_CONFIRM=elicit` a person confirms each
send through MCP elicitation (`confirm.py`), asked by a resolver before the tool's body runs, so
that it works both where the client answers mid-call and where it answers in a retried call.
Every argument's bounds are in its schema, where the SDK enforces them.
"""

import os
import sys
from typing import Annotated, Any

from mcp.server.mcpserver import Context, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ClientCapabilities, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from batchmail import __version__
from batchmail.agents.arguments import refusal
from batchmail.agents.confirm import NOTHING_SENT, Confirm
from batchmail.agents.drafts import DraftTool
from batchmail.agents.http_transport import listen_settings, serve_http
from batchmail.agents.policy import Policy, PolicyError
from batchmail.agents.results import Results
from batchmail.agents.tools import BatchmailTools, EmailArguments
from batchmail.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK

MAX_PREVIEW = 20
MAX_PATH = 4096  # characters of a path (PATH_MAX)
MAX_LINE = 998  # characters of an address or a subject: a header line (RFC 5322, 2.1.1)
MAX_BODY = 1_000_000  # characters of a body
MAX_FILES = 20  # attachments of one message
MAX_COPIES = 50  # cc or bcc addresses of one message
TOKEN_PATTERN = "^[0-9a-f]{64}$"  # noqa: S105 (the shape of a token, not one)
# Header values the tools refuse with a line break in them (`has_line_break`), and paths.
ONE_LINE = r"^[^\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*$"
PATH_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"

INSTRUCTIONS = (
    "Batch mail from YAML job files. To send a job: validate_job, then preview_job (shows the "
    "first messages and returns a token), then run_job with that token. The token is void when "
    "the job's inputs change: preview again. send_email sends one message. Only allowlisted "
    "recipients can be mailed, and this server sends a limited number of messages. These gates "
    "are the server's settings, not the caller's: a refusal says which one stopped the call and "
    "what to do; only the person running the server can change them."
)
# Said in the sending tools' descriptions when the server asks a person.
ASKS = (
    " This server then asks a person to confirm (MCP elicitation: the subject, From, the number "
    "of recipients and the first addresses); only their explicit accept sends, and a client "
    "that cannot ask is refused."
)

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_SENDS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
_DRAFTS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
JobPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH,
        pattern=PATH_PATTERN,
        description="the job file (YAML), relative to the server's root or absolute; "
        "inside the root",
    ),
]
Token = Annotated[
    str,
    Field(
        pattern=TOKEN_PATTERN,
        description="the token preview_job returned for this job (64 hex digits); "
        "void once the job's inputs change",
    ),
]
Address = Annotated[str, Field(min_length=1, max_length=MAX_LINE, pattern=ONE_LINE)]
FilePath = Annotated[str, Field(min_length=1, max_length=MAX_PATH, pattern=PATH_PATTERN)]
# The arguments of a message (send_email, save_draft).
To = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_LINE,
        pattern=ONE_LINE,
        description="one address, optionally 'Name <address>'; allowlisted",
    ),
]
Subject = Annotated[
    str, Field(max_length=MAX_LINE, pattern=ONE_LINE, description="one line: no line break")
]
Body = Annotated[str, Field(max_length=MAX_BODY, description="the plain-text body")]
Html = Annotated[str | None, Field(max_length=MAX_BODY, description="an optional HTML body")]
Attachments = Annotated[
    list[FilePath] | None,
    Field(max_length=MAX_FILES, description="paths of files inside the server's root"),
]
Cc = Annotated[
    list[Address] | None,
    Field(max_length=MAX_COPIES, description="addresses shown in the Cc header; allowlisted"),
]


DESCRIPTIONS = {
    "validate_job": "Validate a batchmail job file: load it, render and build every message, "
    "send nothing. Returns the job's name and number of messages, or every problem found.",
    "preview_job": "Render a job without sending: the summary, the first `limit` messages (To, "
    "Subject, text and HTML bodies, attachments) and the token that run_job needs. The token "
    "is bound to the job's current inputs: any change to them voids it.",
    "run_job": "Send a job that preview_job showed, with the token it returned. Gates, checked "
    "by this server: the token is bound to the job's inputs as previewed (any change voids it: "
    "preview again), every recipient, cc and bcc must be in the allowlist "
    "(BATCHMAIL_MCP_ALLOW), and the messages must fit this server's cap "
    "(BATCHMAIL_MCP_MAX_MESSAGES, per process). Recipients already delivered are not sent again.",
    "send_email": "Send one message from the server's fixed sender to one recipient, with "
    "optional cc and bcc, HTML body and attachments. Gates, checked by this server: the "
    "recipient, cc and bcc must be in the allowlist (BATCHMAIL_MCP_ALLOW), attachments must be "
    "files inside the server's root, and the message must fit this server's cap "
    "(BATCHMAIL_MCP_MAX_MESSAGES, per process).",
    "save_draft": "Write one message as send_email would and store it in the Drafts folder of "
    "this server's mailbox (IMAP) for a person to review and send: nothing is sent, no SMTP. "
    "Gates, checked by this server, as for send_email: the recipient and cc must be in the "
    "allowlist (BATCHMAIL_MCP_ALLOW), attachments must be files inside the server's root, and "
    "the draft counts against this server's cap (BATCHMAIL_MCP_MAX_MESSAGES, per process). "
    "No bcc: a draft keeps its recipients in its headers.",
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
            if isinstance(exc.__cause__, ValidationError):  # the arguments
                return self.results.failure(refusal(name, exc.__cause__), {})
            # The tools' bodies return their failures: this is the question's resolver.
            return self.results.failure(
                f"{name}: the client's answer to the confirmation question did not fit its form "
                f"(a boolean 'confirm'); {NOTHING_SENT}",
                {},
            )
        except MCPError as exc:  # the client failed to put the question to the person
            return self.results.failure(
                f"{name}: the client could not ask the person ({exc.error.message}); "
                f"{NOTHING_SENT}",
                {},
            )


def _capabilities(ctx: Context[Any, Any]) -> ClientCapabilities | None:
    try:
        return ctx.client_capabilities
    except ValueError:  # called outside a client's request: there is nobody to ask
        return None


def build_server(tools: BatchmailTools) -> MCPServer[Any]:
    server = _Server(tools.results)
    call = tools.results.call
    asks = ASKS if tools.policy.ask else ""

    # Resolvers: they run before the tool's body, which gets the person's answer (or why nobody
    # was asked) and checks every gate again before it sends.
    def ask_run(path: str, token: str, ctx: Context[Any, Any]) -> Any:
        return tools.ask_run(path, token, _capabilities(ctx))

    def ask_email(  # noqa: PLR0917 - the tool's arguments, by name
        to: str,
        subject: str,
        body: str,
        html: str | None,
        attachments: list[str] | None,
        cc: list[str] | None,
        bcc: list[str] | None,
        ctx: Context[Any, Any],
    ) -> Any:
        given = EmailArguments(to, subject, body, html, attachments, cc, bcc)
        return tools.ask_email(given, _capabilities(ctx))

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

    @server.tool(description=DESCRIPTIONS["run_job"] + asks, annotations=_SENDS)
    def run_job(
        path: JobPath,
        token: Token,
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_run)],
    ) -> CallToolResult:
        return call(lambda: tools.run(path, token, answer))

    @server.tool(description=DESCRIPTIONS["send_email"] + asks, annotations=_SENDS)
    def send_email(  # noqa: PLR0917 - the tool's parameters are its schema
        to: To,
        subject: Subject,
        body: Body,
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_email)],
        html: Html = None,
        attachments: Attachments = None,
        cc: Cc = None,
        bcc: Annotated[
            list[Address] | None,
            Field(max_length=MAX_COPIES, description="addresses in no header (blind); allowlisted"),
        ] = None,
    ) -> CallToolResult:
        given = EmailArguments(to, subject, body, html, attachments, cc, bcc)
        return call(lambda: tools.send_email(given, answer))

    drafts = DraftTool(tools)

    @server.tool(description=DESCRIPTIONS["save_draft"], annotations=_DRAFTS)
    def save_draft(  # noqa: PLR0917 - the tool's parameters are its schema
        to: To,
        subject: Subject,
        body: Body,
        html: Html = None,
        attachments: Attachments = None,
        cc: Cc = None,
    ) -> CallToolResult:
        given = EmailArguments(to, subject, body, html, attachments, cc)
        return call(lambda: drafts.save(given))

    @server.tool(description=DESCRIPTIONS["get_report"], annotations=_READ_ONLY)
    def get_report(
        path: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_PATH,
                pattern=PATH_PATTERN,
                description="a job file, or a report's .json file; inside the server's root",
            ),
        ],
    ) -> CallToolResult:
        return call(lambda: tools.report(path))

    return server


def serve(http: str | None = None) -> int:
    """Run the MCP server on stdin/stdout until the client closes it, or with `http`
    (HOST:PORT) over Streamable HTTP until stopped; the exit code."""
    try:
        listen = listen_settings(http, os.environ) if http is not None else None
        policy = Policy.from_env(os.environ)
    except PolicyError as exc:
        print(f"batchmail mcp: {exc}", file=sys.stderr)
        return EXIT_INVALID
    server = build_server(BatchmailTools(os.environ, policy))
    if listen is not None:
        return serve_http(server, listen)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK
