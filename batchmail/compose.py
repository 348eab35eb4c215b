"""From a recipient to message bytes, and the validate-everything-first pass over all of them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .attachments import Attachments
from .errors import InvalidJobError, Problem, invalid
from .job import Job, display_path
from .journal import Staged, new_run_id
from .mime import Content, HeaderValueError, MessageBuilder, date_header
from .recipients import Recipient, Warn, read_recipients
from .render import Renderer

MAX_LISTED_PROBLEMS = 20
# Date and Message-ID change per send; the rest of a message is fixed by the job's inputs. The
# validation pass builds with stand-ins of the same length, so its size check holds when sending.
_PLACEHOLDER_RUN = "0" * len(new_run_id(0.0))
_PLACEHOLDER_DATE = date_header(0.0)


@dataclass(frozen=True, slots=True)
class Message:
    recipient: Recipient
    content: Content

    @property
    def attachment_names(self) -> list[str]:
        return [part.filename for part in self.content.attachments]


def _silent(_: str) -> None:
    return None


@dataclass
class Validation:
    count: int = 0
    digest: str = ""
    problems: list[Problem] = field(default_factory=list)


class Composer:
    """Everything needed to turn any recipient of a job into a message."""

    def __init__(self, job: Job, warn: Warn):
        self.job = job
        self.warn = warn
        self.renderer = Renderer(job)
        self.attachments = Attachments(job)
        self.builder = MessageBuilder(job.sender, job.reply_to)

    def recipients(self, problems: list[Problem], *, quiet: bool = False) -> Iterator[Recipient]:
        """The job's recipients; `quiet` for a second pass, whose warnings were already given."""
        return read_recipients(self.job, problems, _silent if quiet else self.warn)

    def compose(self, recipient: Recipient) -> Message:
        rendered = self.renderer.render(recipient)
        parts = self.attachments.for_recipient(rendered.attachment_paths, recipient.describe())
        content = Content(recipient.mailbox, rendered.subject, rendered.text, rendered.html, parts)
        return Message(recipient, content)

    def message_id(self, run_id: str, seq: int) -> str:
        """Deterministic per run and recipient: a message re-sent after a crash keeps its ID."""
        domain = self.job.sender.ascii_address.rpartition("@")[2]
        return f"<{run_id}.{seq}@{domain}>"

    def build(self, message: Message, *, message_id: str, date: str) -> bytes:
        try:
            data = self.builder.build(message.content, message_id=message_id, date=date)
        except HeaderValueError as exc:
            raise invalid(
                message.recipient.origin, f"{exc} ({message.recipient.describe()})", exc.field
            ) from None
        if len(data) > self.job.max_message_bytes:
            raise invalid(
                message.recipient.origin,
                f"the message is {len(data):,} bytes, over "
                f"limits.max_message_bytes ({self.job.max_message_bytes:,}) "
                f"({message.recipient.describe()})",
            )
        return data


def validate(composer: Composer, stage: Callable[[Staged], None] | None = None) -> Validation:
    """Render and build every message once, without sending, and collect every problem.

    The digest covers every envelope and message apart from Date and Message-ID: it changes
    exactly when a recipient would receive something different.
    """
    result = Validation()
    digest = hashlib.sha256()
    for recipient in composer.recipients(result.problems):
        try:
            message = composer.compose(recipient)
            message_id = composer.message_id(_PLACEHOLDER_RUN, recipient.seq)
            data = composer.build(message, message_id=message_id, date=_PLACEHOLDER_DATE)
        except InvalidJobError as exc:
            result.problems.extend(exc.problems)
            continue
        result.count += 1
        digest.update(f"{recipient.seq}\0{recipient.email}\0{len(data)}\0".encode())
        digest.update(data)
        if stage is not None:
            stage(Staged(recipient.seq, recipient.email, len(data), message.attachment_names))
    result.digest = digest.hexdigest()
    _check_count(composer.job, result)
    return result


def _check_count(job: Job, result: Validation) -> None:
    if result.problems:
        shown = result.problems[:MAX_LISTED_PROBLEMS]
        raise InvalidJobError(shown, hidden=len(result.problems) - len(shown))
    where = job.recipients_file_where if job.recipients_file else display_path(job.path)
    if result.count == 0:
        raise invalid(where, "the job has no recipients")
    if job.max_recipients is not None and result.count > job.max_recipients:
        raise invalid(
            where, f"{result.count} recipients, over limits.max_recipients ({job.max_recipients})"
        )
