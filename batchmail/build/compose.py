"""From a recipient to message bytes, and the validate-everything-first pass over all of them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

from msgspec import Struct, field

from batchmail.build.attachments import Attachments
from batchmail.build.content_checks import ContentWarning, check_message
from batchmail.build.content_verdict import ContentFindings, findings_of, judge
from batchmail.build.from_html import FromHtml
from batchmail.build.inline_images import InlineImages
from batchmail.build.message_fields import NO_FIELDS, FieldRenderer, RenderedFields
from batchmail.build.mime import Content, HeaderValueError, MessageBuilder, Part, date_header
from batchmail.build.render import Rendered, Renderer
from batchmail.build.run_id import STAND_IN_RUN_ID
from batchmail.errors import InvalidJobError, Problem, invalid
from batchmail.load.addresses import AddressError, Mailbox, check_address
from batchmail.load.job import display_path
from batchmail.load.recipients import Recipient, RecipientSource, Warn
from batchmail.load.settings import Job

if TYPE_CHECKING:
    from batchmail.build.dkim_sign import Signer

MAX_LISTED_PROBLEMS = 20
# Rendered message fields kept by seq, for the `addressing` of a message just built (or about to
# be): a few, never a table of all recipients.
_RECENT_FIELDS = 4
# Date and Message-ID change per send; the rest of a message is fixed by the job's inputs. The
# validation pass builds with stand-ins of the same length, so its size check holds when sending.
_STAND_IN_DATE = date_header(0.0)


class Message(Struct, frozen=True):
    recipient: Recipient
    content: Content
    fields: RenderedFields = NO_FIELDS

    @property
    def attachment_names(self) -> list[str]:
        return [part.filename for part in self.content.attachments]


class Addressing(Struct, frozen=True):
    """Where a recipient's message goes besides its primary recipient: the envelope sender
    (MAIL FROM) and the copies (cc, then bcc), each address once."""

    sender: Mailbox
    copies: tuple[Mailbox, ...] = ()


class Built(Struct, frozen=True):
    """A message the validation pass built, with stand-ins for its Date and Message-ID (see
    `Composer.finish`), unsigned, and the size it will have when sent."""

    recipient: Recipient
    data: bytes
    size: int
    attachment_names: list[str]
    fields: RenderedFields = NO_FIELDS  # for its addressing when it is sent


class Validation(Struct):
    count: int = 0
    digest: str = ""
    problems: list[Problem] = field(default_factory=list)
    suppressed: int = 0  # recipients in the suppression files (not part of the digest)
    filtered: int = 0  # rows `where` rejected
    content: ContentFindings = field(default_factory=ContentFindings)


class Composer:
    """Everything needed to turn any recipient of a job into a message."""

    def __init__(self, job: Job, warn: Warn, strict: bool = False):
        self.job = job
        self.warn = warn
        self.strict = strict  # content warnings are errors
        self.renderer = Renderer(job)
        self.source = RecipientSource(job, self.renderer.row_test())
        self.fields = FieldRenderer(job, self.renderer)
        self._recent: dict[int, RenderedFields] = {}
        self.attachments = Attachments(job)
        self.builder = MessageBuilder(job.sender, job.reply_to)
        self.signer = _signer(job)
        self._plain_addressing = Addressing(job.sender)
        self.images = (
            InlineImages(job, job.markdown) if job.markdown and job.inline_images else None
        )
        self.from_html = FromHtml.for_job(job)  # None unless it uses inline_css or text: auto

    def recipients(
        self, problems: list[Problem], *, second_pass: bool = False, warn: Warn | None = None
    ) -> Iterator[Recipient]:
        """The job's recipients. A second pass skips what the validation pass did: the address
        checks and the warnings."""
        if second_pass:
            return self.source.second_pass()
        return self.source.first_pass(problems, warn or self.warn)

    def compose(self, recipient: Recipient) -> Message:
        rendered = self.renderer.render(recipient)
        fields = self._fields(recipient)
        parts = self.attachments.for_recipient(rendered.attachment_paths, recipient.describe())
        html = rendered.html
        inline: tuple[Part, ...] = ()
        if self.job.markdown is not None and rendered.text is not None:
            html, inline = self._markdown_html(rendered.text, recipient)
        text = rendered.text
        if html is not None and self.from_html is not None:
            html, text = self.from_html.apply(html, text, recipient.describe())
        content = Content(
            recipient.mailbox,
            rendered.subject,
            text,
            html,
            parts,
            inline,
            self._unsubscribe(rendered, recipient),
            bool(self.job.unsubscribe and self.job.unsubscribe.one_click),
            cc=fields.cc,
            reply_to=fields.reply_to,
            extra=fields.headers,
        )
        return Message(recipient, content, fields)

    def _fields(self, recipient: Recipient) -> RenderedFields:
        """The recipient's message fields, rendered once for its message and its addressing."""
        if not self.fields.active:
            return NO_FIELDS
        fields = self._recent.get(recipient.seq)
        if fields is None:
            fields = self.fields.render(recipient)
            self._remember(recipient.seq, fields)
        return fields

    def _remember(self, seq: int, fields: RenderedFields) -> None:
        if len(self._recent) >= _RECENT_FIELDS:
            self._recent.pop(next(iter(self._recent)), None)
        self._recent[seq] = fields

    def _markdown_html(self, source: str, recipient: Recipient) -> tuple[str, tuple[Part, ...]]:
        from batchmail.build.markdown_body import to_html  # noqa: PLC0415 - see _signer

        images = self.images
        if images is None:
            return to_html(source), ()
        found: dict[str, Part] = {}
        html = to_html(source, lambda src: images.embed(src, found, recipient.describe()))
        return html, tuple(found.values())

    def _unsubscribe(self, rendered: Rendered, recipient: Recipient) -> list[str]:
        """The List-Unsubscribe URIs (RFC 2369): the https URL first, then the mailto."""
        settings = self.job.unsubscribe
        if settings is None:
            return []
        uris = []
        url = rendered.unsubscribe.get("url")
        if url is not None:
            # RFC 8058 3.1 and common receivers accept only https for one-click.
            if not url.lower().startswith("https://") or not url.isascii() or " " in url:
                raise invalid(
                    settings.url_where,
                    f"{url!r} is not an https URL of ASCII characters (percent-encode values "
                    f"with the urlencode filter) ({recipient.describe()})",
                    "unsubscribe.url",
                )
            uris.append(url)
        address = rendered.unsubscribe.get("mailto")
        if address is not None:
            try:
                checked = check_address(address)
            except AddressError as exc:
                raise invalid(
                    settings.mailto_where, f"{exc} ({recipient.describe()})", "unsubscribe.mailto"
                ) from None
            # RFC 6068 2: the address is percent-encoded (UTF-8) where it is not plain ASCII.
            uris.append("mailto:" + quote(checked, safe="@!$'*+-._~="))
        return uris

    def addressing(self, recipient: Recipient) -> Addressing:
        """The recipient's envelope beyond its own address: the rendered envelope sender (else
        the From address) and the copies (cc, then bcc)."""
        if not self.fields.active:
            return self._plain_addressing
        fields = self._fields(recipient)
        return Addressing(fields.envelope_from or self.job.sender, fields.copies(recipient.mailbox))

    def message_id(self, run_id: str, seq: int) -> str:
        """Deterministic per run and recipient: a message re-sent after a crash keeps its ID."""
        domain = self.job.sender.ascii_address.rpartition("@")[2]
        return f"<{run_id}.{seq}@{domain}>"

    def message_bytes(self, recipient: Recipient, *, message_id: str, date: str) -> bytes:
        """The final message for a recipient, built anew."""
        return self.build(self.compose(recipient), message_id=message_id, date=date)

    def finish(self, built: Built, *, message_id: str, date: str) -> bytes:
        """The final message from what the validation pass built: the same bytes as
        `message_bytes`, without rendering and building it again."""
        if built.fields is not NO_FIELDS:
            self._remember(built.recipient.seq, built.fields)
        data = _with_ids(built.data, built.recipient.seq, self.message_id, message_id, date)
        return self.signer.signature(data) + data if self.signer is not None else data

    def build(self, message: Message, *, message_id: str, date: str) -> bytes:
        """The final bytes of a message: DKIM-signed when the job signs, within the size limit."""
        data = self._unsigned(message, message_id, date)
        if self.signer is not None:
            data = self.signer.signature(data) + data
        self._check_size(message, len(data))
        return data

    def check(self, message: Message, *, message_id: str, date: str) -> tuple[bytes, int]:
        """`build` without the signature (which changes with the time) and the final size."""
        data = self._unsigned(message, message_id, date)
        size = len(data) + (self.signer.signature_size(data) if self.signer else 0)
        self._check_size(message, size)
        return data, size

    def _unsigned(self, message: Message, message_id: str, date: str) -> bytes:
        try:
            return self.builder.build(message.content, message_id=message_id, date=date)
        except HeaderValueError as exc:
            raise invalid(
                message.recipient.origin, f"{exc} ({message.recipient.describe()})", exc.field
            ) from None

    def _check_size(self, message: Message, size: int) -> None:
        if size > self.job.max_message_bytes:
            raise invalid(
                message.recipient.origin,
                f"the message is {size:,} bytes, over "
                f"limits.max_message_bytes ({self.job.max_message_bytes:,}) "
                f"({message.recipient.describe()})",
            )


def _with_ids(
    data: bytes, seq: int, make_id: Callable[[str, int], str], message_id: str, date: str
) -> bytes:
    """Put the real Date and Message-ID in place of the validation pass's stand-ins."""
    # Each stand-in is a whole header line: a CRLF before it, never a space (a folded line).
    stand_ins = (
        (b"\r\nDate: " + _STAND_IN_DATE.encode(), b"\r\nDate: " + date.encode()),
        (
            b"\r\nMessage-ID: " + make_id(STAND_IN_RUN_ID, seq).encode(),
            b"\r\nMessage-ID: " + message_id.encode(),
        ),
    )
    for stand_in, real in stand_ins:
        data = data.replace(stand_in + b"\r\n", real + b"\r\n", 1)
    return data


def _signer(job: Job) -> Signer | None:
    # Imported only when used: dkimpy (with its DNS resolver) and markdown-it take longer to
    # load than a small job takes to send.
    if job.dkim is None:
        return None
    from batchmail.build.dkim_sign import Signer  # noqa: PLC0415

    return Signer(job.dkim)


class PartValidation(Struct):
    """What a validation pass over part of the recipients found: every row is read and checked,
    the messages of the part's recipients are built."""

    count: int = 0
    digest: int = 0  # sum of the messages' SHA-256: the same whichever process built which
    problems: list[tuple[tuple[int, int], Problem]] = field(default_factory=list)  # (order, it)
    hidden: int = 0
    warnings: list[str] = field(default_factory=list)
    repeated_rows: set[int] = field(default_factory=set)  # for a second pass elsewhere
    filtered: int = 0
    content: dict[int, tuple[ContentWarning, ...]] = field(default_factory=dict)  # by seq

    def add(self, order: tuple[int, int], problems: Iterable[Problem]) -> None:
        for problem in problems:
            if len(self.problems) < MAX_LISTED_PROBLEMS:
                self.problems.append((order, problem))
            else:
                self.hidden += 1


def validate(composer: Composer, built: Callable[[Built], None] | None = None) -> Validation:
    """Render and build every message once, without sending, and collect every problem; each
    message built goes to `built`."""
    part = validate_part(composer, built)
    return merge(composer, [part])


def validate_part(
    composer: Composer,
    built: Callable[[Built], None] | None = None,
    builds: Callable[[int], bool] | None = None,
    reports_rows: bool = True,
) -> PartValidation:
    """The validation pass over the recipients whose seq `builds` takes (None: all). Problems
    with the rows themselves, and the warnings, are reported by one part (`reports_rows`):
    every part meets them."""
    result = PartValidation()
    rows: list[Problem] = []
    warn = result.warnings.append if reports_rows else _ignore
    seq = 0
    for recipient in composer.recipients(rows, warn=warn):
        seq = recipient.seq
        if rows:  # rows refused since the last recipient come before this one
            result.add((seq, 0), rows if reports_rows else ())
            rows.clear()
        if builds is None or builds(seq):
            _validate_one(composer, recipient, result, built)
    result.add((seq + 1, 0), rows if reports_rows else ())
    result.repeated_rows = composer.source.repeated_rows()
    result.filtered = composer.source.filtered
    return result


def _ignore(_: str) -> None:
    return None


def _validate_one(
    composer: Composer,
    recipient: Recipient,
    result: PartValidation,
    built: Callable[[Built], None] | None,
) -> None:
    try:
        message = composer.compose(recipient)
        message_id = composer.message_id(STAND_IN_RUN_ID, recipient.seq)
        data, size = composer.check(message, message_id=message_id, date=_STAND_IN_DATE)
    except InvalidJobError as exc:
        result.add((recipient.seq, 1), exc.problems)
        return
    result.count += 1
    content = message.content
    warnings = check_message(recipient.email, recipient.origin, content.text, content.html)
    if warnings:
        result.content[recipient.seq] = warnings
    digest = hashlib.sha256(f"{recipient.seq}\0{recipient.email}\0{size}\0".encode())
    digest.update(data)
    if composer.fields.active:  # what the bytes do not show: bcc and the envelope sender
        addressing = composer.addressing(recipient)
        envelope = [addressing.sender.envelope_address, *(c.key for c in addressing.copies)]
        digest.update("\0".join(envelope).encode())
    result.digest += int.from_bytes(digest.digest())
    if built is not None:
        built(Built(recipient, data, size, message.attachment_names, message.fields))


def merge(composer: Composer, parts: list[PartValidation]) -> Validation:
    """The whole job's validation from its parts' (raises InvalidJobError listing problems),
    after the first part's warnings.

    The digest covers every envelope and message apart from Date and Message-ID: it changes
    exactly when a recipient would receive something different."""
    for warning in parts[0].warnings:
        composer.warn(warning)
    problems = sorted((p for part in parts for p in part.problems), key=lambda p: p[0])
    hidden = sum(part.hidden for part in parts) + max(0, len(problems) - MAX_LISTED_PROBLEMS)
    result = Validation(count=sum(part.count for part in parts), filtered=parts[0].filtered)
    result.problems = [problem for _, problem in problems[:MAX_LISTED_PROBLEMS]]
    total = sum(part.digest for part in parts) % (1 << 256)
    result.digest = hashlib.sha256(f"{result.count}:{total:064x}".encode()).hexdigest()
    if result.problems:
        raise InvalidJobError(result.problems, hidden=hidden)
    _check_count(composer.job, result)
    result.content = findings_of(composer.job, result.count, (part.content for part in parts))
    judge(result.content, strict=composer.strict, warn=composer.warn)
    return result


def _check_count(job: Job, result: Validation) -> None:
    where = job.recipients_file_where if job.recipients_file else display_path(job.path)
    if result.count == 0:
        raise invalid(where, "the job has no recipients")
    if job.max_recipients is not None and result.count > job.max_recipients:
        raise invalid(
            where, f"{result.count} recipients, over limits.max_recipients ({job.max_recipients})"
        )
