"""`batchmail mcp`: batchmail as an MCP server over stdio, for LLM agents.

The gates are here, not in the client: a job runs only with the token of a preview of exactly its
current inputs, only when every recipient is in the allowlist and the messages fit the per-process
cap; files must be inside the root; secret values never appear in a result or in a message.
"""

import glob
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from msgspec import Struct, field
from pydantic import Field

from batchmail import __version__
from batchmail.agents.policy import ENV_SMTP_PASSWORD, Allowlist, Policy, PolicyError
from batchmail.api import RunOptions, RunResult, default_report_path
from batchmail.api import run_job as api_run_job
from batchmail.build.compose import Composer, Message, Validation, validate
from batchmail.build.mime import (
    Content,
    HeaderValueError,
    MessageBuilder,
    Part,
    attachment_part,
    date_header,
    detect_type,
)
from batchmail.errors import (
    EXIT_CONNECT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_IO,
    EXIT_OK,
    EXIT_TEMPFAIL,
    BatchmailError,
    ConnectFailure,
    InvalidJobError,
    Problem,
    invalid,
)
from batchmail.load.addresses import AddressError, Mailbox, has_line_break, parse_mailbox
from batchmail.load.job import load_job
from batchmail.load.recipients import Recipient, Warn
from batchmail.load.settings import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORTS, Job, SmtpSettings
from batchmail.send.runner import Event
from batchmail.transport.smtp import Credentials, Envelope, Route, SmtpTransport

log = logging.getLogger(__name__)

ENV_SMTP_HOST = "BATCHMAIL_SMTP_HOST"
ENV_SMTP_PORT = "BATCHMAIL_SMTP_PORT"
ENV_SMTP_SECURITY = "BATCHMAIL_SMTP_SECURITY"
ENV_SMTP_USERNAME = "BATCHMAIL_SMTP_USERNAME"
ENV_FROM = "BATCHMAIL_FROM"
SMTP_TIMEOUT = 30.0
MAX_PREVIEW = 20
MAX_BODY_CHARS = 20_000  # of each previewed body: an agent's context is not a mailbox
MAX_LISTED = 20  # addresses listed in a refusal
MAX_REPORT_RECIPIENTS = 200
MAX_ERROR_CHARS = 1_000

EXIT_MEANINGS = {
    EXIT_OK: "every recipient delivered (now or in an earlier run)",
    EXIT_FAILED: "some recipients failed permanently (5xx); see the report",
    EXIT_INVALID: "the job is invalid: nothing was sent",
    EXIT_CONNECT: "could not connect, negotiate TLS or authenticate: nothing was sent",
    EXIT_IO: "the journal or the report could not be written",
    EXIT_TEMPFAIL: "some recipients are deferred (temporary failures or a quota): "
    "run the job again later to finish",
    EXIT_INTERRUPTED: "interrupted: run the job again to resume",
}

INSTRUCTIONS = (
    "Batch mail from YAML job files. To send a job: validate_job, then preview_job (shows the "
    "first messages and returns a token), then run_job with that token. The token is void when "
    "the job's inputs change: preview again. send_email sends one message. Only allowlisted "
    "recipients can be mailed, and this server sends a limited number of messages."
)


class ToolFailure(Exception):
    """A tool's refusal or failure: a one-line message, and optional structured details."""

    def __init__(self, message: str, data: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.data = dict(data or {})


# ---------------------------------------------------------------------------------------------
# Checking a job


class _GatedComposer(Composer):
    """A Composer that notes every recipient and refuses messages that would carry a secret."""

    def __init__(self, job: Job, warn: Warn, found_secret: Callable[..., bool]):
        super().__init__(job, warn)
        self.found_secret = found_secret
        self.mailboxes: dict[int, Mailbox] = {}

    def compose(self, recipient: Recipient) -> Message:
        message = super().compose(recipient)
        content = message.content
        if self.found_secret(content.subject, content.text, content.html):
            raise invalid(
                recipient.origin,
                "the message would contain the value of a secret environment variable; "
                f"refused ({recipient.describe()})",
            )
        self.mailboxes[recipient.seq] = recipient.mailbox
        return message


class _Checked(Struct):
    """A job that validated: every message rendered and built once."""

    path: Path
    job: Job
    composer: _GatedComposer
    validation: Validation
    warnings: list[str]

    @property
    def mailboxes(self) -> list[Mailbox]:
        return list(self.composer.mailboxes.values())


class _RunGuard(Struct):
    """Watches a run's deliveries; stops it if it strays beyond what was checked beforehand
    (inputs changed between the server's check and the run's own validation)."""

    allow: Allowlist
    budget: int
    stop: threading.Event = field(default_factory=threading.Event)
    seen: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: Event) -> None:
        with self.lock:
            self.seen.add(event.recipient.seq)
            if len(self.seen) > self.budget or not self.allow.allows(event.recipient.mailbox):
                self.stop.set()


def _secret_names(job: Job) -> list[str]:
    """The environment variables that hold a job's SMTP secrets."""
    oauth2 = getattr(job.smtp, "oauth2", None)
    fields = ("access_token_env", "refresh_token_env", "client_secret_env")
    names = [job.smtp.password_env, *(getattr(oauth2, f, None) for f in fields)]
    return [name for name in names if isinstance(name, str) and name]


def _matches(base: Path, pattern: str) -> Iterator[Path]:
    """The files a shared attachment glob matches, as batchmail.build.attachments finds them."""
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    for match in glob.iglob(full, recursive=True):
        if os.path.isfile(match):
            yield Path(match)


# ---------------------------------------------------------------------------------------------
# send_email's settings


class _SmtpConfig(Struct, frozen=True):
    settings: SmtpSettings
    credentials: Credentials | None
    sender: Mailbox


def smtp_config(environ: Mapping[str, str]) -> _SmtpConfig:
    """send_email's SMTP server and From, from the server's environment."""
    host = environ.get(ENV_SMTP_HOST, "").strip()
    if not host:
        raise ToolFailure(f"send_email is not configured: {ENV_SMTP_HOST} is not set")
    security = environ.get(ENV_SMTP_SECURITY, "").strip().lower() or "starttls"
    if security not in DEFAULT_PORTS:
        raise ToolFailure(f"{ENV_SMTP_SECURITY} is {security!r}: use starttls, tls or none")
    username = environ.get(ENV_SMTP_USERNAME, "")
    password = environ.get(ENV_SMTP_PASSWORD, "")
    if bool(username) != bool(password):
        raise ToolFailure(f"{ENV_SMTP_USERNAME} and {ENV_SMTP_PASSWORD} go together")
    if username and security == "none":
        raise ToolFailure(
            f"{ENV_SMTP_SECURITY}=none with a user name would send the password in plaintext: "
            "use starttls or tls"
        )
    settings = SmtpSettings(host, _port(environ, security), security, timeout=SMTP_TIMEOUT)
    credentials = Credentials(username, password) if username else None
    return _SmtpConfig(settings, credentials, _sender(environ))


def _port(environ: Mapping[str, str], security: str) -> int:
    text = environ.get(ENV_SMTP_PORT, "").strip()
    if not text:
        return DEFAULT_PORTS[security]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ToolFailure(f"{ENV_SMTP_PORT} is {text!r}: not a port number")
    return int(text)


def _sender(environ: Mapping[str, str]) -> Mailbox:
    text = environ.get(ENV_FROM, "").strip()
    if not text:
        raise ToolFailure(f"send_email is not configured: {ENV_FROM} is not set")
    try:
        return parse_mailbox(text)
    except AddressError as exc:
        raise ToolFailure(f"{ENV_FROM}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The tools


class BatchmailTools:
    """What the MCP tools do, apart from the protocol: every gate is checked here."""

    def __init__(self, environ: Mapping[str, str], policy: Policy, key: bytes | None = None):
        self.environ = dict(environ)
        self.policy = policy
        self.key = key or secrets.token_bytes(32)  # per process: tokens die with the server
        # Jobs bring their own SMTP settings: send_email's password is not theirs to use.
        self.job_environ = {k: v for k, v in environ.items() if k != ENV_SMTP_PASSWORD}

    # -- results -------------------------------------------------------------------------------

    def call(self, action: Callable[[], dict[str, Any]]) -> CallToolResult:
        """Run a tool's action; every failure becomes an isError result, never a traceback."""
        try:
            return self._result(action(), error=False)
        except ToolFailure as exc:
            return self._failure(str(exc), exc.data)
        except PolicyError as exc:
            return self._failure(str(exc), {})
        except BatchmailError as exc:
            lines = exc.lines()
            more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
            details = {"exit_code": exc.exit_code, "errors": lines}
            return self._failure(lines[0] + more if lines else str(exc), details)
        except Exception:
            log.exception("a batchmail MCP tool failed unexpectedly")
            return self._failure("internal error in the batchmail MCP server (see its log)", {})

    def _failure(self, message: str, data: Mapping[str, Any]) -> CallToolResult:
        line = " ".join(message.split())[:MAX_ERROR_CHARS]
        return self._result({"error": line, **data}, error=True)

    def _result(self, data: dict[str, Any], *, error: bool) -> CallToolResult:
        clean: dict[str, Any] = self.policy.redactor.data(data)
        text = clean["error"] if error else json.dumps(clean, indent=2, ensure_ascii=False)
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=clean,
            is_error=error,
        )

    def _shown(self, path: Path) -> str:
        root = self.policy.root.path
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    # -- validate_job / preview_job ------------------------------------------------------------

    def validate(self, path: str) -> dict[str, Any]:
        return {"valid": True, **self._summary(self._check(path))}

    def preview(self, path: str, limit: int) -> dict[str, Any]:
        checked = self._check(path)
        return {
            **self._summary(checked),
            "previews": self._rendered(checked, max(1, min(limit, MAX_PREVIEW))),
            "token": self._token(checked),
        }

    def _check(self, path: str) -> _Checked:
        job_path = self.policy.root.resolve(path, "job file")
        if not job_path.is_file():
            raise ToolFailure(f"no job file at {path!r}")
        job = load_job(job_path, self.job_environ)
        for name in _secret_names(job):
            self.policy.redactor.add(self.job_environ.get(name))
        self._check_job_files(job)
        warnings: list[str] = []
        composer = _GatedComposer(job, warnings.append, self.policy.redactor.found_in)
        validation = validate(composer)
        return _Checked(job_path, job, composer, validation, warnings)

    def _check_job_files(self, job: Job) -> None:
        root = self.policy.root
        root.check(job.base_dir, "base_dir")
        if job.recipients_file is not None:
            root.check(job.recipients_file, "recipients_file")
        for ref in (job.text, job.html, getattr(job, "markdown", None)):
            if ref is not None:
                root.check(job.base_dir / ref.name, "template")
        for spec in job.attachments:
            if not spec.templated:  # a templated path is kept inside base_dir by batchmail
                for match in _matches(job.base_dir, spec.pattern):
                    root.check(match, "attachment")

    def _summary(self, checked: _Checked) -> dict[str, Any]:
        refused = self.policy.allow.refused(checked.mailboxes)
        count = checked.validation.count
        remaining = self.policy.quota.remaining
        blocked = []
        if refused:
            blocked.append(f"{len(refused)} recipients are not in the allowlist")
        if count > remaining:
            blocked.append(f"{count} messages, but this server may send only {remaining} more")
        return {
            "job": checked.job.name,
            "path": self._shown(checked.path),
            "from": checked.job.sender.shown,
            "messages": count,
            "warnings": checked.warnings[:MAX_LISTED],  # a copy: a later pass may add more
            "not_allowed": refused[:MAX_LISTED],
            "not_allowed_count": len(refused),
            "remaining_messages": remaining,
            "can_run": not blocked,
            "blocked_by": blocked,
        }

    def _rendered(self, checked: _Checked, limit: int) -> list[dict[str, Any]]:
        problems: list[Problem] = []
        shown: list[dict[str, Any]] = []
        for recipient in checked.composer.recipients(problems):
            if len(shown) >= limit:
                break
            shown.append(_message_view(checked.composer.compose(recipient)))
        return shown

    def _token(self, checked: _Checked) -> str:
        bound = f"{checked.path}\0{checked.validation.digest}".encode()
        return hmac.new(self.key, bound, hashlib.sha256).hexdigest()

    # -- run_job ---------------------------------------------------------------------------------

    def run(self, path: str, token: str | None) -> dict[str, Any]:
        checked = self._check(path)
        if not token:
            raise ToolFailure(
                "run_job needs the token that preview_job returned for this job: preview it first"
            )
        if not hmac.compare_digest(token.encode(), self._token(checked).encode()):
            raise ToolFailure(
                "the token does not match this job as it is now: its inputs changed since "
                "preview_job (or the token is for another job or an earlier server); "
                "preview it again; nothing was sent"
            )
        self._check_allowed(checked.mailboxes)
        count = checked.validation.count
        self.policy.quota.reserve(count)
        guard = _RunGuard(self.policy.allow, count)
        # One process: a tool runs in a worker thread, where forking is unsafe, and the guard
        # sees every event. The digest: send exactly what was previewed, nothing changed since.
        options = RunOptions(
            environ=self.job_environ,
            stop=guard.stop,
            on_event=guard.on_event,
            warn=_ignore,
            processes=1,
            expected_digest=checked.validation.digest,
        )
        charged = count  # unless the run says otherwise, every message may have left
        try:
            result = api_run_job(checked.path, options)
            charged = _charged(result.summary, count)
        except (ConnectFailure, InvalidJobError):
            charged = 0  # raised before anything was sent
            raise
        finally:
            self.policy.quota.release(count - charged)
        return self._run_view(result)

    def _check_allowed(self, boxes: list[Mailbox]) -> None:
        refused = self.policy.allow.refused(boxes)
        if refused:
            listed = ", ".join(refused[:MAX_LISTED])
            more = f" and {len(refused) - MAX_LISTED} more" if len(refused) > MAX_LISTED else ""
            raise ToolFailure(
                f"not in the allowlist (BATCHMAIL_MCP_ALLOW): {listed}{more}; nothing was sent",
                {"not_allowed": refused[:MAX_LISTED], "not_allowed_count": len(refused)},
            )

    def _run_view(self, result: RunResult) -> dict[str, Any]:
        return {
            "job": result.job,
            "run_id": result.run_id,
            "status": result.status,
            "exit_code": result.exit_code,
            "meaning": EXIT_MEANINGS.get(result.exit_code, ""),
            "summary": result.summary,
            "message": result.message,
            "report": self._shown(result.report),
            "remaining_messages": self.policy.quota.remaining,
        }

    # -- send_email ------------------------------------------------------------------------------

    def send_email(
        self, to: str, subject: str, body: str, html: str | None, attachments: list[str] | None
    ) -> dict[str, Any]:
        for name, value in (("to", to), ("subject", subject)):
            if has_line_break(value):
                raise ToolFailure(f"the {name} contains a line break (CR/LF); refused")
        try:
            recipient = parse_mailbox(to)
        except AddressError as exc:
            raise ToolFailure(f"to: {exc}") from None
        self._check_allowed([recipient])
        config = smtp_config(self.environ)
        parts = [self._attachment(given) for given in attachments or []]
        data, message_id = _build(config.sender, Content(recipient, subject, body, html, parts))
        sender = config.sender
        # RFC 6531: a non-ASCII address on either side of the envelope needs SMTPUTF8.
        smtputf8 = recipient.smtputf8 or sender.smtputf8
        route = Route(0, sender.envelope_address, recipient.envelope_address, smtputf8)
        envelope = Envelope(route, data)
        self.policy.quota.reserve(1)
        transport = SmtpTransport(config.settings, config.credentials)
        try:
            outcome = transport.send(envelope)
        except ConnectFailure:
            self.policy.quota.release(1)  # no session: nothing was sent
            raise
        finally:
            transport.close()
        details = {
            "status": outcome.state,
            "smtp_code": outcome.code,
            "smtp_response": outcome.response,
        }
        if outcome.state != "sent" and outcome.code is None and smtputf8:
            needing = [box.address for box in (sender, recipient) if box.smtputf8]
            raise ToolFailure(
                f"the SMTP server does not offer SMTPUTF8 (RFC 6531), which the non-ASCII "
                f"address {' and '.join(needing)} needs; nothing was sent",
                details,
            )
        if outcome.state != "sent":
            raise ToolFailure(
                f"the SMTP server did not accept the message ({outcome.state}): "
                f"{outcome.code or ''} {outcome.response}",
                details,
            )
        return {
            **details,
            "from": config.sender.shown,
            "to": recipient.shown,
            "subject": subject,
            "message_id": message_id,
            "attachments": [_part_view(p) for p in parts],
            "remaining_messages": self.policy.quota.remaining,
        }

    def _attachment(self, given: str) -> Part:
        path = self.policy.root.resolve(given, "attachment")
        if not path.is_file():
            raise ToolFailure(f"attachment not found: {given!r}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToolFailure(f"cannot read the attachment {given!r}: {exc.strerror}") from None
        name = Path(given).name
        try:
            return attachment_part(name, data, detect_type(data, name))
        except HeaderValueError as exc:
            raise ToolFailure(f"attachment file name {exc}") from None

    # -- get_report ------------------------------------------------------------------------------

    def report(self, path: str) -> dict[str, Any]:
        target = self.policy.root.resolve(path, "job or report file")
        if not target.is_file():
            raise ToolFailure(f"no file at {path!r}")
        if target.suffix.lower() == ".json":
            report = target
        else:
            job = load_job(target, self.job_environ)
            report = default_report_path(job, RunOptions(environ=self.job_environ))
            if not report.is_file():
                raise ToolFailure(
                    f"job {job.name!r} has no report yet (looked for {self._shown(report)}): "
                    "run_job writes it"
                )
        return {**_read_report(report), "report": self._shown(report)}


def _charged(summary: Mapping[str, int], count: int) -> int:
    """Messages of a run that count against the cap: all but those already delivered before
    (skipped) and those never tried (pending). A resumed run counts its earlier sends again."""
    untouched = summary.get("skipped", 0) + summary.get("pending", 0)
    return max(0, min(count, count - untouched))


def _build(sender: Mailbox, content: Content) -> tuple[bytes, str]:
    domain = sender.ascii_address.rpartition("@")[2]
    message_id = f"<{uuid.uuid4().hex}.mcp@{domain}>"
    try:
        data = MessageBuilder(sender).build(
            content, message_id=message_id, date=date_header(time.time())
        )
    except HeaderValueError as exc:
        raise ToolFailure(f"{exc.field}: {exc}") from None
    if len(data) > DEFAULT_MAX_MESSAGE_BYTES:
        raise ToolFailure(
            f"the message is {len(data):,} bytes, over {DEFAULT_MAX_MESSAGE_BYTES:,}; "
            "nothing was sent"
        )
    return data, message_id


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolFailure(f"cannot read the report {path.name}: {exc}") from None
    if not isinstance(data, dict) or "job" not in data or "summary" not in data:
        raise ToolFailure(f"{path.name} is not a batchmail report")
    recipients = data.get("recipients")
    if isinstance(recipients, list) and len(recipients) > MAX_REPORT_RECIPIENTS:
        data["recipients"] = recipients[:MAX_REPORT_RECIPIENTS]
        data["recipients_omitted"] = len(recipients) - MAX_REPORT_RECIPIENTS
    return data


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"\n[... {len(text) - MAX_BODY_CHARS:,} more characters]"


def _part_view(part: Part) -> dict[str, Any]:
    return {"name": part.filename, "content_type": part.content_type, "size": part.size}


def _message_view(message: Message) -> dict[str, Any]:
    content = message.content
    return {
        "to": content.to.shown,
        "subject": content.subject,
        "text": _clip(content.text),
        "html": _clip(content.html),
        "attachments": [_part_view(p) for p in content.attachments],
    }


def _ignore(_: object) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# The MCP server

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
    "recipient, with optional HTML body and attachments (files inside the server's root).",
    "get_report": "The JSON report of a job's latest run (give the job file) or of a report "
    "file: status, counts and every recipient's result.",
}


def build_server(tools: BatchmailTools) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "batchmail", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )

    @server.tool(description=DESCRIPTIONS["validate_job"], annotations=_READ_ONLY)
    def validate_job(path: JobPath) -> CallToolResult:
        return tools.call(lambda: tools.validate(path))

    @server.tool(description=DESCRIPTIONS["preview_job"], annotations=_READ_ONLY)
    def preview_job(
        path: JobPath,
        limit: Annotated[int, Field(description=f"messages to show, 1 to {MAX_PREVIEW}")] = 3,
    ) -> CallToolResult:
        return tools.call(lambda: tools.preview(path, limit))

    @server.tool(description=DESCRIPTIONS["run_job"], annotations=_SENDS)
    def run_job(
        path: JobPath,
        token: Annotated[str, Field(description="the token preview_job returned")] = "",
    ) -> CallToolResult:
        return tools.call(lambda: tools.run(path, token))

    @server.tool(description=DESCRIPTIONS["send_email"], annotations=_SENDS)
    def send_email(
        to: Annotated[str, Field(description="one address, optionally 'Name <address>'")],
        subject: str,
        body: Annotated[str, Field(description="the plain-text body")],
        html: Annotated[str | None, Field(description="an optional HTML body")] = None,
        attachments: Annotated[
            list[str] | None, Field(description="paths of files inside the server's root")
        ] = None,
    ) -> CallToolResult:
        return tools.call(lambda: tools.send_email(to, subject, body, html, attachments))

    @server.tool(description=DESCRIPTIONS["get_report"], annotations=_READ_ONLY)
    def get_report(
        path: Annotated[str, Field(description="a job file, or a report's .json file")],
    ) -> CallToolResult:
        return tools.call(lambda: tools.report(path))

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
