"""A job's message fields rendered per recipient: cc, bcc, a templated Reply-To, the extra
headers and the envelope sender (MAIL FROM, for VERP)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jinja2
from msgspec import Struct

from batchmail.build.mime import HeaderValueError, unstructured_header
from batchmail.build.render import Renderer
from batchmail.errors import invalid
from batchmail.load.addresses import AddressError, Mailbox, parse_mailbox, parse_mailbox_list
from batchmail.load.recipients import Recipient
from batchmail.load.settings import Job


class RenderedFields(Struct, frozen=True):
    """One recipient's message fields. Bcc goes into the envelope only, never into a header."""

    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: Mailbox | None = None
    headers: tuple[bytes, ...] = ()  # encoded header lines, each ending in CRLF
    envelope_from: Mailbox | None = None  # None: the From address

    def copies(self, recipient: Mailbox) -> tuple[Mailbox, ...]:
        return copies_of(recipient, self.cc, self.bcc)


def copies_of(
    recipient: Mailbox, cc: Sequence[Mailbox], bcc: Sequence[Mailbox]
) -> tuple[Mailbox, ...]:
    """The envelope's further recipients: cc, then bcc, each person once (compared as the
    recipients' de-duplication compares them), and never the primary recipient, who would get
    the message twice."""
    seen = {recipient.person_key}
    copies = []
    for box in (*cc, *bcc):
        if box.person_key not in seen:
            seen.add(box.person_key)
            copies.append(box)
    return tuple(copies)


NO_FIELDS = RenderedFields()


class FieldRenderer:
    """Compiles the job's message-field templates once, in the job's one environment."""

    def __init__(self, job: Job, renderer: Renderer):
        fields = job.fields
        self.active = fields.rendered
        self.renderer = renderer
        self.where = fields.where

        def compile_all(key: str, sources: Sequence[str]) -> list[jinja2.Template]:
            where = self.where.get(key, "")
            return [
                renderer.inline_template(f"{key}[{i}]", source, where)
                for i, source in enumerate(sources)
            ]

        self.cc = compile_all("cc", fields.cc)
        self.bcc = compile_all("bcc", fields.bcc)
        self.reply_to = compile_all("reply_to", [fields.reply_to] if fields.reply_to else [])
        self.envelope_from = compile_all(
            "envelope_from", [fields.envelope_from] if fields.envelope_from else []
        )
        self.headers = [
            (name, renderer.inline_template(f"headers.{name}", value, self._at(name)))
            for name, value in fields.headers
        ]

    def _at(self, header: str) -> str:
        return self.where.get(f"headers.{header}", "")

    def render(self, recipient: Recipient) -> RenderedFields:
        """The recipient's fields; a value that is no address, or a header value a header
        cannot hold, is an InvalidJobError naming the job file line, the field and the
        recipient."""
        if not self.active:
            return NO_FIELDS
        context = self.renderer.context(recipient)

        def render(template: jinja2.Template) -> str:
            return self.renderer.render_in(template, context, recipient)

        return RenderedFields(
            cc=self._mailboxes("cc", self.cc, render, recipient),
            bcc=self._mailboxes("bcc", self.bcc, render, recipient),
            reply_to=self._one("reply_to", self.reply_to, render, recipient),
            headers=tuple(
                line
                for name, template in self.headers
                if (line := self._header(name, render(template), recipient))
            ),
            envelope_from=self._one("envelope_from", self.envelope_from, render, recipient),
        )

    def _mailboxes(
        self,
        key: str,
        templates: list[jinja2.Template],
        render: Callable[[jinja2.Template], str],
        recipient: Recipient,
    ) -> tuple[Mailbox, ...]:
        boxes: list[Mailbox] = []
        for template in templates:
            text = render(template)
            try:
                boxes += parse_mailbox_list(text)
            except AddressError as exc:
                raise invalid(
                    self.where.get(key, ""), f"{exc} ({recipient.describe()})", key
                ) from None
        return tuple(boxes)

    def _one(
        self,
        key: str,
        templates: list[jinja2.Template],
        render: Callable[[jinja2.Template], str],
        recipient: Recipient,
    ) -> Mailbox | None:
        """One mailbox, or None where the template renders empty (or there is none)."""
        text = render(templates[0]).strip() if templates else ""
        if not text:
            return None
        try:
            return parse_mailbox(text)
        except AddressError as exc:
            raise invalid(self.where.get(key, ""), f"{exc} ({recipient.describe()})", key) from None

    def _header(self, name: str, value: str, recipient: Recipient) -> bytes:
        """The header line, or nothing when the value renders empty."""
        if not value.strip():
            return b""
        try:
            return unstructured_header(name, value)
        except HeaderValueError as exc:
            key = f"headers.{name}"
            raise invalid(self._at(name), f"{exc} ({recipient.describe()})", key) from None
