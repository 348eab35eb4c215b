"""Content checks: what would go wrong with a message in a mailbox, judged from the message
before it is sent. Each finding is a warning; `--strict` makes them errors (content_verdict.py).

The checks run once per message in the validation pass, on the rendered bodies, so they must
stay light: the HTML is parsed (html.parser, the standard library's) only when it holds a tag
or attribute a check looks at, and measured exactly only when it could be near Gmail's limit.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from batchmail.build.mime import encoded_text_size

WarningCode = Literal[
    "html-clipped",  # the HTML part is over Gmail's clipping size
    "html-without-text",  # an HTML body and no text part
    "img-without-alt",  # an <img> with no alt attribute
    "relative-url",  # an href or src that cannot work in a mailbox
    "no-unsubscribe",  # many recipients and no `unsubscribe` in the job
]

# Gmail shows "[Message clipped]" and hides the rest of a message whose HTML is over about
# 102 KB. It counts the HTML part as it travels, after its Content-Transfer-Encoding (quoted-
# printable's =XX escapes and soft line breaks count), so that is what is measured here: the
# encoded body of the text/html part, without its MIME headers. Senders' own measurements put
# the cut between about 102 KB and 105 KB; 102,000 bytes is taken, so a warning comes early.
# https://www.spamresource.com/2022/01/what-is-gmail-clipping-and-what-to-do.html
GMAIL_CLIP_BYTES = 102_000
# Gmail and Yahoo ask bulk senders for a one-click unsubscribe; past a few hundred recipients a
# job without `unsubscribe` is likely such a mailing.
MANY_RECIPIENTS = 300
# A byte of the HTML's UTF-8 takes at most 3 in quoted-printable (=XX), plus a soft line break
# (3 bytes with its CRLF) every 75 at most: under 5 in all. HTML that small is not measured.
_SURELY_SMALL = GMAIL_CLIP_BYTES // 5


class ContentWarning(Struct, frozen=True):
    """One finding about one recipient's message (or, with no recipient, about the job)."""

    code: WarningCode
    recipient: str  # the primary recipient's address; "" for the job as a whole
    text: str  # one line
    where: str = ""  # the recipient's file:line (or the job file), for errors


def check_message(
    recipient: str, where: str, text: str | None, html: str | None
) -> tuple[ContentWarning, ...]:
    """The warnings of one message, from its rendered bodies."""
    if html is None:
        return ()
    found = [
        ContentWarning(code, recipient, line, where) for code, line in _html_findings(html, text)
    ]
    return tuple(found)


def check_job(count: int, has_unsubscribe: bool, where: str) -> tuple[ContentWarning, ...]:
    """The warnings about the job as a whole, from its number of recipients."""
    if count <= MANY_RECIPIENTS or has_unsubscribe:
        return ()
    line = (
        f"{count:,} recipients and no unsubscribe: Gmail and Yahoo ask bulk senders for a "
        "List-Unsubscribe (set unsubscribe.url or unsubscribe.mailto)"
    )
    return (ContentWarning("no-unsubscribe", "", line, where),)


def _html_findings(html: str, text: str | None) -> list[tuple[WarningCode, str]]:
    found: list[tuple[WarningCode, str]] = []
    utf8_size = len(html) if html.isascii() else len(html.encode())
    if utf8_size > _SURELY_SMALL:
        size = encoded_text_size(html)
        if size > GMAIL_CLIP_BYTES:
            found.append(
                (
                    "html-clipped",
                    f"the HTML part is {size:,} bytes as sent, over {GMAIL_CLIP_BYTES:,}: "
                    "Gmail clips it and hides the rest behind '[Message clipped]'",
                )
            )
    if text is None:
        found.append(
            (
                "html-without-text",
                "an HTML body without a text part: add template.text for readers and filters "
                "that read text",
            )
        )
    lowered = html.lower()
    if "<img" in lowered or "href" in lowered or "src" in lowered:
        # Imported here: html.parser (with html.entities) is loaded only by jobs it has to read.
        from batchmail.build.html_tags import scan_tags  # noqa: PLC0415

        found += scan_tags(html)
    return found
