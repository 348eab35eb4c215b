"""A job looked at before it is sent: every message rendered and built once (as validation does),
the first few shown as a person would read them, nothing sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msgspec import Struct, field

from batchmail.build.compose import Composer, Message, validate
from batchmail.errors import Problem, invalid
from batchmail.load.addresses import Mailbox
from batchmail.load.recipients import Recipient
from batchmail.load.settings import Job
from batchmail.load.suppression import load_suppression
from batchmail.send.single import Attached

# Whether any of the texts holds something that must never be mailed (a secret's value).
Screen = Callable[..., bool]


class ShownMessage(Struct, frozen=True):
    to: Mailbox
    subject: str
    text: str | None
    html: str | None
    attachments: tuple[Attached, ...]


class JobPreview(Struct, frozen=True):
    job: Job
    count: int
    digest: str  # of every envelope and message: it changes when any recipient's would
    mailboxes: list[Mailbox]  # every recipient, in order
    messages: list[ShownMessage]  # the first ones
    warnings: list[str] = field(default_factory=list)
    attachment_files: list[Path] = field(default_factory=list)  # what the shared globs matched
    suppressed: int = 0  # recipients in the suppression files: never mailed
    copies: list[Mailbox] = field(default_factory=list)  # cc and bcc addresses, each once


class _ScreenedComposer(Composer):
    """A Composer that notes every recipient and refuses a message the screen objects to."""

    def __init__(self, job: Job, warnings: list[str], screen: Screen | None):
        super().__init__(job, warnings.append)
        self.screen = screen
        self.mailboxes: dict[int, Mailbox] = {}
        self.copies: dict[str, Mailbox] = {}

    def compose(self, recipient: Recipient) -> Message:
        message = super().compose(recipient)
        content = message.content
        if self.screen is not None and self.screen(content.subject, content.text, content.html):
            raise invalid(
                recipient.origin,
                "the message would contain the value of a secret environment variable; "
                f"refused ({recipient.describe()})",
            )
        self.mailboxes[recipient.seq] = recipient.mailbox
        for copy in message.fields.copies(recipient.mailbox):
            self.copies.setdefault(copy.key, copy)
        return message


def preview_job(job: Job, limit: int, screen: Screen | None = None) -> JobPreview:
    """Validate the job (InvalidJobError listing every problem) and show its first `limit`
    messages; `screen` refuses messages holding what must not be mailed."""
    warnings: list[str] = []
    suppression = load_suppression(job)
    composer = _ScreenedComposer(job, warnings, screen)
    validation = validate(composer)
    warned = list(warnings)  # before the messages are shown: that pass warns again
    files = [
        path
        for spec in job.attachments
        if not spec.templated  # a templated path is kept inside base_dir by the composer
        for path in composer.attachments.matching(spec.pattern)
    ]
    return JobPreview(
        job,
        validation.count,
        validation.digest,
        list(composer.mailboxes.values()),
        _first_messages(composer, limit),
        warned,
        files,
        suppression.count(composer.mailboxes.values()),
        list(composer.copies.values()),
    )


def _first_messages(composer: Composer, limit: int) -> list[ShownMessage]:
    problems: list[Problem] = []
    shown: list[ShownMessage] = []
    if limit <= 0:
        return shown
    for recipient in composer.recipients(problems):
        if len(shown) >= limit:
            break
        content = composer.compose(recipient).content
        attached = tuple(Attached(p.filename, p.content_type, p.size) for p in content.attachments)
        shown.append(
            ShownMessage(content.to, content.subject, content.text, content.html, attached)
        )
    return shown
