"""A job's settings as frozen records: what a loaded job file says, checked and typed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from batchmail.load.addresses import Mailbox

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_MAX_MESSAGE_BYTES = 25_000_000
_TEMPLATED = re.compile(r"\{\{|\{%")


class SmtpSettings(Struct, frozen=True):
    host: str
    port: int
    security: str
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    allow_insecure_auth: bool = False
    helo: str | None = None
    auth: str = "password"  # password | xoauth2
    oauth2: OAuth2Settings | None = None


class OAuth2Settings(Struct, frozen=True):
    """Where the XOAUTH2 bearer token comes from: a ready token, or a refresh grant."""

    access_token_env: str | None = None
    refresh_token_env: str | None = None
    client_id_env: str | None = None
    client_secret_env: str | None = None
    token_url: str | None = None


class DkimSettings(Struct, frozen=True):
    domain: str
    selector: str
    private_key: bytes  # PEM, read once when the job is loaded
    key_source: str = ""  # the file or variable it came from, for messages
    headers: tuple[str, ...] | None = None
    where: str = ""

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback
        return f"DkimSettings(domain={self.domain!r}, selector={self.selector!r}, private_key=***)"


class UnsubscribeSettings(Struct, frozen=True):
    url: str | None = None  # Jinja2 templates
    mailto: str | None = None
    one_click: bool = False
    url_where: str = ""
    mailto_where: str = ""


class MessageFields(Struct, frozen=True):
    """The job's templated fields beyond subject and body, rendered per recipient."""

    cc: tuple[str, ...] = ()  # Jinja2 templates; a rendered value may hold several addresses
    bcc: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # (field name, template of its value)
    envelope_from: str | None = None  # template of MAIL FROM (VERP)
    reply_to: str | None = None  # template of Reply-To, when it is one (a literal: Job.reply_to)
    where: Mapping[str, str] = field(
        default_factory=dict
    )  # key (cc, headers.X-Tag...): job file line

    @property
    def copies(self) -> bool:
        """Whether the message may go to envelope recipients beyond the primary one."""
        return bool(self.cc or self.bcc)

    @property
    def rendered(self) -> bool:
        """Whether any of them is rendered per recipient."""
        return bool(self.cc or self.bcc or self.headers or self.envelope_from or self.reply_to)


class RateSettings(Struct, frozen=True):
    per_second: float | None = None
    per_minute: float | None = None
    per_hour: float | None = None
    per_day: float | None = None
    batch_size: int | None = None
    batch_pause: float = 0.0
    connections: int = 1

    @property
    def paced(self) -> bool:
        """Whether a rate or a batch pause holds messages back."""
        return bool(self.windows() or self.batch_size)

    def windows(self) -> list[tuple[int, float]]:
        """(messages, seconds) pairs: at most `messages` in any window of `seconds`."""
        spans = (
            (self.per_second, 1.0),
            (self.per_minute, 60.0),
            (self.per_hour, 3600.0),
            (self.per_day, 86400.0),
        )
        return [_whole_messages(count, span) for count, span in spans if count is not None]


def _whole_messages(count: float, span: float) -> tuple[int, float]:
    """2.5 per second holds as 2 per second; 0.5 per second as 1 per 2 seconds."""
    return (int(count), span) if count >= 1 else (1, span / count)


class AttachmentSpec(Struct, frozen=True):
    pattern: str
    where: str  # job file and line, for errors
    content_type: str | None = None
    required: bool = True

    @property
    def templated(self) -> bool:
        return bool(_TEMPLATED.search(self.pattern))


class TemplateRef(Struct, frozen=True):
    name: str  # path relative to base_dir, as the Jinja2 loader knows it
    where: str


class DataFileOptions(Struct, frozen=True):
    """How to read the recipients file: a text file's encoding and delimiter (None: found from
    the file), a workbook's sheet (None: the first)."""

    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None


class RowFilter(Struct, frozen=True):
    expression: str  # `where:`, a Jinja2 expression over a row
    where: str  # job file and line, for errors


class Grouping(Struct, frozen=True):
    field: str  # `group_by:`: rows with the same value of it are one recipient
    where: str


class InlineRecipient(Struct, frozen=True):
    fields: Mapping[str, Any]
    where: str


class Job(Struct, frozen=True):
    path: Path
    name: str
    base_dir: Path
    sender: Mailbox
    subject: str
    subject_where: str
    smtp: SmtpSettings
    reply_to: Mailbox | None = None
    text: TemplateRef | None = None
    html: TemplateRef | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    recipients: tuple[InlineRecipient, ...] = ()
    recipients_file: Path | None = None
    recipients_file_where: str = ""
    recipients_options: DataFileOptions = DataFileOptions()
    row_filter: RowFilter | None = None
    group_by: Grouping | None = None
    attachments: tuple[AttachmentSpec, ...] = ()
    rate: RateSettings = RateSettings()
    max_recipients: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    retry_max_attempts: int = 3
    retry_window: float = 60.0
    markdown: TemplateRef | None = None
    inline_images: bool = False
    text_auto: bool = False  # `template.text: auto`: the text part derived from the HTML part
    inline_css: bool = False  # `template.inline_css`: <style> rules moved into style= attributes
    dkim: DkimSettings | None = None
    unsubscribe: UnsubscribeSettings | None = None
    fields: MessageFields = MessageFields()
    suppress: tuple[Path, ...] = ()  # files of addresses and @domains never mailed
    suppress_where: str = ""

    @property
    def html_body(self) -> TemplateRef | None:
        """The template the HTML part comes from: the HTML template, else the Markdown."""
        return self.html or self.markdown
