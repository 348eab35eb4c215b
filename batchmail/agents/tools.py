"""What the MCP tools do, apart from the protocol: every gate is checked here, and every message
is built and sent by the library (`batchmail.api`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Elicit
from mcp.types import ClientCapabilities
from msgspec import Struct

from batchmail import api
from batchmail.agents.confirm import (
    Confirm,
    Unasked,
    ask,
    consent,
    email_outline,
    run_outline,
)
from batchmail.agents.policy import ENV_SMTP_PASSWORD, Policy, RunGuard
from batchmail.agents.results import EXIT_MEANINGS, Results, ToolFailure, clip, read_report
from batchmail.agents.settings import SmtpConfig, smtp_config
from batchmail.errors import ConnectFailure, InvalidJobError
from batchmail.load.addresses import AddressError, Mailbox, has_line_break, parse_mailbox
from batchmail.load.job import load_job
from batchmail.load.settings import Job
from batchmail.state.states import DeliveryState

MAX_LISTED = 20  # addresses listed in a refusal
# A run's recipients to whom nothing went in it.
_UNTOUCHED = (DeliveryState.SKIPPED, DeliveryState.PENDING, DeliveryState.SUPPRESSED)


class EmailArguments(Struct, frozen=True):
    """A message as send_email and save_draft take it from the client, not yet checked."""

    to: str
    subject: str
    body: str
    html: str | None = None
    attachments: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None


class BatchmailTools:
    """The tools' actions; each returns the result's data or raises a one-line refusal."""

    def __init__(self, environ: Mapping[str, str], policy: Policy, key: bytes | None = None):
        self.environ = dict(environ)
        self.policy = policy
        self.results = Results(policy)
        self.key = key or secrets.token_bytes(32)  # per process: tokens die with the server
        # Jobs bring their own SMTP settings: send_email's password is not theirs to use.
        self.job_environ = {k: v for k, v in environ.items() if k != ENV_SMTP_PASSWORD}

    # -- validate_job / preview_job ------------------------------------------------------------

    def validate(self, path: str) -> dict[str, Any]:
        return {"valid": True, **self._summary(self._check(path, 0))}

    def preview(self, path: str, limit: int) -> dict[str, Any]:
        preview = self._check(path, limit)
        return {
            **self._summary(preview),
            "previews": [_message_view(shown) for shown in preview.messages],
            "token": self._token(preview),
        }

    def _check(self, path: str, limit: int) -> api.JobPreview:
        job_path = self.policy.root.resolve(path, "job file")
        if not job_path.is_file():
            raise ToolFailure(f"no job file at {path!r}")
        job = load_job(job_path, self.job_environ)
        for name in _secret_names(job):
            self.policy.redactor.add(self.job_environ.get(name))
        self._check_job_files(job)
        preview = api.preview(job, limit, self.policy.redactor.found_in)
        for match in preview.attachment_files:
            self.policy.root.check(match, "attachment")
        return preview

    def _check_job_files(self, job: Job) -> None:
        """Before anything is read: the job's own files are inside the root."""
        root = self.policy.root
        root.check(job.base_dir, "base_dir")
        if job.recipients_file is not None:
            root.check(job.recipients_file, "recipients_file")
        for ref in (job.text, job.html, job.markdown):
            if ref is not None:
                root.check(job.base_dir / ref.name, "template")
        for path in job.suppress:
            root.check(path, "suppress")

    def _summary(self, preview: api.JobPreview) -> dict[str, Any]:
        refused = self.policy.allow.refused([*preview.mailboxes, *preview.copies])
        count = preview.count
        remaining = self.policy.quota.remaining
        blocked = []
        if refused:
            blocked.append(f"{len(refused)} recipients are not in the allowlist")
        if count > remaining:
            blocked.append(f"{count} messages, but this server may send only {remaining} more")
        return {
            "job": preview.job.name,
            "path": self.results.shown(preview.job.path),
            "from": preview.job.sender.shown,
            "messages": count,
            "suppressed": preview.suppressed,  # of those: listed in a suppression file, not sent
            "warnings": preview.warnings[:MAX_LISTED],
            "not_allowed": refused[:MAX_LISTED],
            "not_allowed_count": len(refused),
            "remaining_messages": remaining,
            "can_run": not blocked,
            "blocked_by": blocked,
        }

    def _token(self, preview: api.JobPreview) -> str:
        bound = f"{preview.job.path}\0{preview.digest}".encode()
        return hmac.new(self.key, bound, hashlib.sha256).hexdigest()

    # -- run_job ---------------------------------------------------------------------------------

    def run(self, path: str, token: str | None, answer: object = None) -> dict[str, Any]:
        """Send a previewed job; `answer` is the person's, when this server asks one."""
        preview = self._gate_run(path, token, 0)
        count = preview.count
        consent(answer, self.policy.ask)  # after the gates, before anything counts
        self.policy.quota.reserve(count)
        guard = RunGuard(self.policy.allow, count)
        # One process: a tool runs in a worker thread, where forking is unsafe, and the guard
        # sees every event. The digest: send exactly what was previewed, nothing changed since.
        options = api.RunOptions(
            environ=self.job_environ,
            stop=guard.stop,
            on_event=guard.on_event,
            processes=1,
            expected_digest=preview.digest,
        )
        charged = count  # unless the run says otherwise, every message may have left
        try:
            result = api.run_job(preview.job.path, options)
            charged = _charged(result.summary, count)
        except (ConnectFailure, InvalidJobError):
            charged = 0  # raised before anything was sent
            raise
        finally:
            self.policy.quota.release(count - charged)
        return self._run_view(result)

    def _gate_run(self, path: str, token: str | None, limit: int) -> api.JobPreview:
        """run_job's gates: the token of a preview of these inputs, the allowlist, the cap."""
        preview = self._check(path, limit)
        if not token:
            raise ToolFailure(
                "run_job needs the token that preview_job returned for this job: preview it first"
            )
        if not hmac.compare_digest(token.encode(), self._token(preview).encode()):
            raise ToolFailure(
                "the token does not match this job as it is now: its inputs changed since "
                "preview_job (or the token is for another job or an earlier server); "
                "preview it again; nothing was sent"
            )
        self._check_allowed([*preview.mailboxes, *preview.copies])
        self.policy.quota.check(preview.count)
        return preview

    def ask_run(
        self, path: str, token: str | None, capabilities: ClientCapabilities | None
    ) -> Elicit[Confirm] | Unasked:
        """The question for the person before run_job sends, once its gates pass."""
        return ask(self.policy, lambda: run_outline(self._gate_run(path, token, 1)), capabilities)

    def _check_allowed(self, boxes: list[Mailbox]) -> None:
        refused = self.policy.allow.refused(boxes)
        if refused:
            listed = ", ".join(refused[:MAX_LISTED])
            more = f" and {len(refused) - MAX_LISTED} more" if len(refused) > MAX_LISTED else ""
            raise ToolFailure(
                f"not in the allowlist (BATCHMAIL_MCP_ALLOW): {listed}{more}; nothing was sent",
                {"not_allowed": refused[:MAX_LISTED], "not_allowed_count": len(refused)},
            )

    def _run_view(self, result: api.RunResult) -> dict[str, Any]:
        return {
            "job": result.job,
            "run_id": result.run_id,
            "status": result.status,
            "exit_code": result.exit_code,
            "meaning": EXIT_MEANINGS.get(result.exit_code, ""),
            "summary": result.summary,
            "message": result.message,
            "report": self.results.shown(result.report),
            "remaining_messages": self.policy.quota.remaining,
        }

    # -- send_email ------------------------------------------------------------------------------

    def send_email(self, given: EmailArguments, answer: object = None) -> dict[str, Any]:
        """Send one message; `answer` is the person's, when this server asks one."""
        config, message = self._gate_email(given)
        consent(answer, self.policy.ask)  # after the gates, before anything counts
        self.policy.quota.reserve(1)
        try:
            sent = api.send_one(message, config.settings, self.environ)
        except (ConnectFailure, InvalidJobError):
            self.policy.quota.release(1)  # no session, or no message: nothing was sent
            raise
        if not sent.reached_the_server:
            self.policy.quota.release(1)
        details = {"status": sent.state, "smtp_code": sent.code, "smtp_response": sent.response}
        if sent.state != DeliveryState.SENT:
            raise ToolFailure(
                f"the SMTP server did not accept the message ({sent.state}): "
                f"{sent.code or ''} {sent.response}",
                details,
            )
        return {
            **details,
            "from": config.sender.shown,
            "to": message.to.shown,
            "cc": [box.shown for box in message.cc],
            "bcc": [box.shown for box in message.bcc],
            "subject": message.subject,
            "message_id": sent.message_id,
            "attachments": [attached_view(a) for a in sent.attachments],
            "remaining_messages": self.policy.quota.remaining,
        }

    def _gate_email(self, given: EmailArguments) -> tuple[SmtpConfig, api.OneMessage]:
        """send_email's gates: headers without line breaks, the allowlist, files inside the root,
        the cap; the message they allow."""
        to, cc, bcc = self.addressed(given)
        config = smtp_config(self.environ)
        files = self.attached(given)
        self.policy.quota.check(1)
        message = api.OneMessage(
            config.sender, to, given.subject, given.body, given.html, files, cc, bcc
        )
        return config, message

    def ask_email(
        self, given: EmailArguments, capabilities: ClientCapabilities | None
    ) -> Elicit[Confirm] | Unasked:
        """The question for the person before send_email sends, once its gates pass."""
        return ask(self.policy, lambda: email_outline(self._gate_email(given)[1]), capabilities)

    def addressed(
        self, given: EmailArguments
    ) -> tuple[Mailbox, tuple[Mailbox, ...], tuple[Mailbox, ...]]:
        """To, cc and bcc parsed, each in the allowlist, and a subject without line breaks."""
        if has_line_break(given.subject):
            raise ToolFailure("the subject contains a line break (CR/LF); refused")
        [to] = _mailboxes("to", [given.to])
        cc, bcc = _mailboxes("cc", given.cc or []), _mailboxes("bcc", given.bcc or [])
        self._check_allowed([to, *cc, *bcc])
        return to, cc, bcc

    def attached(self, given: EmailArguments) -> tuple[api.FileToAttach, ...]:
        """The attachments, each a file inside the root."""
        return tuple(self._attachment(path) for path in given.attachments or [])

    def _attachment(self, given: str) -> api.FileToAttach:
        path = self.policy.root.resolve(given, "attachment")
        if not path.is_file():
            raise ToolFailure(f"attachment not found: {given!r}")
        return api.FileToAttach(path, Path(given).name)

    # -- get_report ------------------------------------------------------------------------------

    def report(self, path: str) -> dict[str, Any]:
        target = self.policy.root.resolve(path, "job or report file")
        if not target.is_file():
            raise ToolFailure(f"no file at {path!r}")
        if target.suffix.lower() == ".json":
            report = target
        else:
            job = load_job(target, self.job_environ)
            report = api.default_report_path(job, api.RunOptions(environ=self.job_environ))
            if not report.is_file():
                raise ToolFailure(
                    f"job {job.name!r} has no report yet (looked for "
                    f"{self.results.shown(report)}): run_job writes it"
                )
        return {**read_report(report), "report": self.results.shown(report)}


def _mailboxes(field: str, given: list[str]) -> tuple[Mailbox, ...]:
    """Each address given, parsed; a refusal naming the field and the address otherwise."""
    boxes = []
    for text in given:
        if has_line_break(text):
            raise ToolFailure(f"the {field} contains a line break (CR/LF); refused")
        try:
            boxes.append(parse_mailbox(text))
        except AddressError as exc:
            raise ToolFailure(f"{field}: {exc}") from None
    return tuple(boxes)


def _secret_names(job: Job) -> list[str]:
    """The environment variables that hold a job's SMTP secrets."""
    names = [job.smtp.password_env]
    oauth2 = job.smtp.oauth2
    if oauth2 is not None:
        names += [oauth2.access_token_env, oauth2.refresh_token_env, oauth2.client_secret_env]
    return [name for name in names if name]


def _charged(summary: Mapping[str, int], count: int) -> int:
    """Messages of a run that count against the cap: all but those already delivered before
    (skipped), those never tried (pending) and the suppressed. A resumed run counts its earlier
    sends again."""
    untouched = sum(summary.get(state, 0) for state in _UNTOUCHED)
    return max(0, min(count, count - untouched))


def attached_view(attached: api.Attached) -> dict[str, Any]:
    return {"name": attached.name, "content_type": attached.content_type, "size": attached.size}


def _message_view(shown: api.ShownMessage) -> dict[str, Any]:
    return {
        "to": shown.to.shown,
        "subject": shown.subject,
        "text": clip(shown.text),
        "html": clip(shown.html),
        "attachments": [attached_view(a) for a in shown.attachments],
    }
