"""One message of the dry-run preview as an HTML card: its headers, attachments and bodies.

Everything taken from the message is HTML-escaped; an HTML body goes only into a sandboxed
`<iframe srcdoc>` (see preview_page.py for the page's policy).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html import escape
from pathlib import Path
from urllib.parse import quote, unquote

from msgspec import Struct, field

from batchmail.build.content_checks import ContentWarning
from batchmail.build.mime import detect_type

MAX_INLINE_IMAGE = 100_000  # bytes: a larger `cid:` image is listed but not shown

_PARSER = BytesParser(policy=policy.default)
_CID_URL = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)


class Attachment(Struct, frozen=True):
    filename: str
    content_type: str  # as the message declares it
    detected: str  # what the content is (python-magic)
    size: int
    inline: bool = False  # an image the HTML body shows by `cid:`


class Contents(Struct):
    """What a message holds besides its headers."""

    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # Content-ID -> data: URL


def card(seq: int, path: Path, size: int, warnings: Sequence[ContentWarning] = ()) -> str:
    """One message as an `<article>`: headers, attachments, the content checks' warnings, then
    its HTML and text bodies."""
    message = read_message(path)
    contents = contents_of(message)
    meta = [
        ("To", escape(str(message.get("To", "")))),
        ("Size", size_html(size)),
        ("File", f'<a href="{escape(quote(path.name))}">{escape(path.name)}</a>'),
    ]
    if contents.attachments:
        meta.append(("Attachments", _attachment_list(contents.attachments)))
    rows = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in meta)
    subject = escape(str(message.get("Subject", "")))
    return (
        f'<article class="msg" id="m{seq}">\n<header><h2><span class="seq">#{seq:,}</span>'
        f'{subject}</h2><dl class="meta">{rows}</dl></header>\n{_warnings_panel(warnings)}'
        '<div class="bodies">'
        f"{_html_section(seq, contents.html)}{_text_section(contents.text)}</div>\n</article>\n"
    )


def read_message(path: Path) -> EmailMessage:
    with path.open("rb") as data:
        return _PARSER.parse(data)


def contents_of(message: EmailMessage) -> Contents:
    """One walk over the parts: the first inline text/plain and text/html are the bodies,
    every other leaf part is listed as an attachment."""
    contents = Contents()
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        inline = part.get_content_disposition() != "attachment"
        if inline and kind == "text/plain" and contents.text is None:
            contents.text = decoded_text(part)
        elif inline and kind == "text/html" and contents.html is None:
            contents.html = decoded_text(part)
        else:
            contents.attachments.append(attachment_of(part, kind, contents.images))
    if contents.html is not None and contents.images:
        contents.html = with_images(contents.html, contents.images)
    return contents


def decoded_text(part: EmailMessage) -> str:
    """A text part's content; an unknown or wrong charset is decoded leniently."""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def attachment_of(part: EmailMessage, content_type: str, images: dict[str, str]) -> Attachment:
    """An attached file; an inline image with a Content-ID also goes into `images`."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    filename = part.get_filename() or "(no name)"
    content_id = str(part.get("Content-ID", "")).strip().removeprefix("<").removesuffix(">")
    inline = bool(content_id) and part.get_content_disposition() != "attachment"
    if inline and content_type.startswith("image/") and len(data) <= MAX_INLINE_IMAGE:
        images[content_id] = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
    detected = detect_type(data, filename)
    return Attachment(filename, content_type, detected, len(data), inline)


def with_images(html: str, images: dict[str, str]) -> str:
    """Point the body's `cid:` URLs (RFC 2392: percent-encoded) at `data:` URLs of the parts,
    which the page's policy allows, so the preview shows the images as a mail client would."""

    def replace(match: re.Match[str]) -> str:
        return images.get(unquote(match.group(1)), match.group(0))

    return _CID_URL.sub(replace, html)


def _attachment_list(attachments: list[Attachment]) -> str:
    items = []
    for att in attachments:
        warn, kind = "", escape(att.content_type) + (" · inline" if att.inline else "")
        if att.detected != att.content_type:
            warn = f'<span class="warn">content looks like {escape(att.detected)}</span>'
        items.append(
            f'<li><span class="name">{escape(att.filename)}</span>'
            f'<span class="type">{kind}</span>'
            f'<span class="size">{size_html(att.size)}</span>{warn}</li>'
        )
    return f'<ul class="atts">{"".join(items)}</ul>'


def _warnings_panel(warnings: Sequence[ContentWarning]) -> str:
    if not warnings:
        return ""
    items = "".join(
        f'<li><code class="code">{escape(w.code)}</code> {escape(w.text)}</li>' for w in warnings
    )
    return f'<section class="checks" aria-label="content warnings"><ul>{items}</ul></section>\n'


def _html_section(seq: int, body: str | None) -> str:
    if body is None:
        return '<section><h3>HTML</h3><p class="none">No HTML body.</p></section>'
    return (
        f'<section><h3>HTML</h3><iframe sandbox="" loading="lazy" referrerpolicy="no-referrer" '
        f'title="HTML body of message {seq}" srcdoc="{escape(body, quote=True)}"></iframe>'
        "</section>"
    )


def _text_section(body: str | None) -> str:
    if body is None:
        return '<section><h3>Text</h3><p class="none">No text body.</p></section>'
    return f"<section><h3>Text</h3><pre>{escape(body)}</pre></section>"


def size_html(size: int) -> str:
    """A byte count for people (SI units), with the exact count in a tooltip."""
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    shown = f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
    return f'<span title="{size:,} bytes">{shown}</span>'
