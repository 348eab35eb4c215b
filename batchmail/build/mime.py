"""Building messages as bytes: headers field by field, parts, attachments and their MIME types.

The message is assembled from pre-encoded pieces rather than through `email.message`: a shared
attachment is base64-encoded once for all recipients, and header values never pass through the
standard library's header parser, which turns encoded-words holding a line break into real line
breaks (CVE-2024-6923).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import mimetypes
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import Header
from email.utils import encode_rfc2231, format_datetime

import magic
from msgspec import Struct

from batchmail.load.addresses import Mailbox, has_line_break

CRLF = b"\r\n"
_LINESEP = "\r\n"
_MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters
_GENERIC_TYPES = frozenset({"text/plain", "application/octet-stream", "application/x-empty"})
_TEXTUAL_GUESSES = ("text/", "application/json", "application/xml")
# An RFC 2045 token needs no quoting; but `'`, `*` and `%` mean something in RFC 2231
# parameters, and parsers mistake a bare value holding them: those are quoted.
_TOKEN = re.compile(r"[A-Za-z0-9!#$&+.^_`|~-]+")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e\t]*$")
_QUOTABLE = re.compile(r"[ !#-\[\]-~]+")  # printable ASCII but `"` and `\`: quoted as it is
_ENCODING = magic.Magic(mime_encoding=True)
_UNKNOWN_8BIT = "unknown-8bit"
_PERCENT_ENCODED = re.compile(r"%[0-9A-F]{2}")
_URI = re.compile(r"^[!-;=?-~]{1,900}$")  # printable ASCII but space, `<` and `>`
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # as `email.utils` quotes them
_QUOTED_PAIR = re.compile(r'[\\"]')


class HeaderValueError(ValueError):
    """A value bound for a header contains a line break or NUL."""

    def __init__(self, field: str, value: str, problem: str = "contains a line break"):
        super().__init__(f"{value!r} {problem}, refused in a header")
        self.field = field


class Part(Struct, frozen=True):
    """An encoded attachment: ready to place in any message."""

    filename: str
    content_type: str
    size: int  # bytes of the file
    encoded: bytes  # MIME headers, blank line and base64 body, CRLF line endings


class Content(Struct, frozen=True):
    """What one recipient's message says; `build_message` turns it into bytes."""

    to: Mailbox
    subject: str
    text: str | None
    html: str | None
    attachments: Sequence[Part] = ()
    inline: Sequence[Part] = ()  # images the HTML shows by cid: (multipart/related)
    list_unsubscribe: Sequence[str] = ()  # URIs, RFC 2369
    one_click: bool = False  # RFC 8058 List-Unsubscribe-Post
    cc: Sequence[Mailbox] = ()
    reply_to: Mailbox | None = None  # the recipient's own, when the job's is a template
    extra: Sequence[bytes] = ()  # the job's own header lines (`headers`), encoded


def detect_type(data: bytes, filename: str) -> str:
    """The MIME type from the content (python-magic), refined by the name when that says little."""
    try:
        found = str(magic.from_buffer(data[:65536], mime=True))
    except magic.MagicException:
        found = "application/octet-stream"
    if found not in _GENERIC_TYPES:
        return found
    guess, _ = mimetypes.guess_type(filename, strict=False)
    if guess and (found == "application/octet-stream" or guess.startswith(_TEXTUAL_GUESSES)):
        return guess
    return "application/octet-stream" if found == "application/x-empty" else found


def text_charset(data: bytes) -> str:
    """The charset of a text file, for its part's Content-Type: a text part without one is
    US-ASCII to readers that follow RFC 2046 (4.1.2), and shown garbled.

    utf-8 for any valid UTF-8, ASCII included (one label, true of both); utf-16 for a file
    that starts with its byte order mark (RFC 2781 4.3); otherwise the 8-bit charset
    python-magic finds; windows-1252 for what it calls unknown-8bit but windows-1252 decodes
    (bytes 0x80-0x9F as curly quotes and dashes: text saved on Windows); else unknown-8bit
    (RFC 1428): 8-bit text of a charset nobody knows, which a reader must not take for ASCII.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        found = str(_ENCODING.from_buffer(data[:65536]))
    except magic.MagicException:
        found = _UNKNOWN_8BIT
    for charset in (found, "windows-1252") if found == _UNKNOWN_8BIT else (found,):
        if _decodes(data, charset):
            return charset
    return _UNKNOWN_8BIT


def _decodes(data: bytes, charset: str) -> bool:
    try:
        data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return False
    return True


def date_header(timestamp: float) -> str:
    """RFC 5322 3.3 date-time, in UTC: to the second, so a run formats it once a second."""
    return _date_of_second(int(timestamp))


@functools.lru_cache(maxsize=2)
def _date_of_second(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))


def attachment_part(filename: str, data: bytes, content_type: str) -> Part:
    """A file as an attachment. Any file name is carried as it is: where it holds what a
    header may not (a line break, say), RFC 2231 percent-encodes it."""
    if content_type.startswith("text/") and "charset=" not in content_type.lower():
        content_type = f"{content_type}; charset={text_charset(data)}"
    head = (
        f"Content-Type: {content_type};\r\n\t{_parameter('name', filename)}\r\n"
        f"Content-Disposition: attachment;\r\n\t{_parameter('filename', filename)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    body = base64.encodebytes(data).replace(b"\n", CRLF)
    return Part(filename, content_type, len(data), head.encode("ascii") + body)


def inline_part(filename: str, data: bytes, content_type: str, content_id: str) -> Part:
    """An image shown by the HTML part as `cid:CONTENT_ID` (RFC 2392)."""
    if has_line_break(filename):
        raise HeaderValueError("image filename", filename)
    head = (
        f"Content-Type: {content_type}\r\n"
        f"Content-Disposition: inline;\r\n\t{_parameter('filename', filename)}\r\n"
        f"Content-ID: <{content_id}>\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    body = base64.encodebytes(data).replace(b"\n", CRLF)
    return Part(filename, content_type, len(data), head.encode("ascii") + body)


def _parameter(key: str, value: str) -> str:
    """A MIME parameter: a token, a quoted string, or RFC 2231 `key*=utf-8''...` wherever
    quoting is fragile: non-ASCII, `"` and `\\` (which common MIME tools unescape wrongly or not
    at all), control characters and line breaks, spaces at either end (which readers strip),
    and text that looks like an RFC 2047 encoded-word, which some decode even inside quotes."""
    if _TOKEN.fullmatch(value):  # the whole value: `$` would let a final line break pass
        return f"{key}={value}"
    if _QUOTABLE.fullmatch(value) and "=?" not in value and value.strip(" ") == value:
        return f'{key}="{value}"'
    return f"{key}*={encode_rfc2231(value, 'utf-8')}"


class MessageBuilder:
    """Assembles messages for one sender; From and Reply-To are encoded once."""

    def __init__(self, sender: Mailbox, reply_to: Mailbox | None = None):
        self.sender = sender
        lines = [address_header("From", sender)]
        if reply_to is not None:
            lines.append(address_header("Reply-To", reply_to))
        self._fixed = b"".join(lines)

    def build(self, content: Content, *, message_id: str, date: str) -> bytes:
        """The whole message, CRLF line endings, every line within 998 octets."""
        head = b"".join(
            [
                self._fixed,
                address_header("Reply-To", content.reply_to) if content.reply_to else b"",
                address_header("To", content.to),
                addresses_header("Cc", content.cc) if content.cc else b"",
                unstructured_header("Subject", content.subject),
                _generated_header("Date", date),
                _generated_header("Message-ID", message_id),
                *_list_headers(content),
                *content.extra,
                b"MIME-Version: 1.0\r\n",
            ]
        )
        return head + _body(content)


def _list_headers(content: Content) -> list[bytes]:
    if not content.list_unsubscribe:
        return []
    lines = [list_unsubscribe_header(content.list_unsubscribe)]
    if content.one_click:
        # RFC 8058 3.1: exactly this value, which the receiver POSTs to the https URI.
        lines.append(unstructured_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return lines


def list_unsubscribe_header(uris: Sequence[str]) -> bytes:
    """RFC 2369 3.2: `<uri>, <uri>`, folded between entries; each URI plain ASCII, unbroken.

    Percent-encodings go in lower case (`%c3%bc`, the same octets by RFC 3986 2.1): SpamAssassin
    scores a header holding `%` and two capitals (UNRESOLVED_TEMPLATE, for placeholders such
    as `%FIRSTNAME` left unfilled), which Jinja's urlencode makes of any non-ASCII value."""
    for uri in uris:
        if has_line_break(uri):
            raise HeaderValueError("list-unsubscribe", uri)
        if not _URI.match(uri):
            raise HeaderValueError(
                "list-unsubscribe", uri, "is not a URI of printable ASCII without spaces, <, >"
            )
    listed = ",\r\n ".join(f"<{_PERCENT_ENCODED.sub(_lower, uri)}>" for uri in uris)
    return f"List-Unsubscribe: {listed}\r\n".encode("ascii")


def _lower(match: re.Match[str]) -> str:
    return match.group(0).lower()


def _body(content: Content) -> bytes:
    html = _text_part("html", content.html)
    if html is not None and content.inline:
        # RFC 2387: the root (the HTML) comes first; `type` names it.
        html = _multipart("related", [html, *(p.encoded for p in content.inline)], "text/html")
    parts = [p for p in (_text_part("plain", content.text), html) if p]
    body = parts[0] if len(parts) == 1 else _multipart("alternative", parts)
    if content.attachments:
        body = _multipart("mixed", [body, *(a.encoded for a in content.attachments)])
    return body


def _text_part(subtype: str, text: str | None) -> bytes | None:
    if text is None:
        return None
    encoding, body = _encoded_text(text)
    head = (
        f"Content-Type: text/{subtype}; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii")
    return head + body.replace(b"\n", CRLF)


def encoded_text_size(text: str) -> int:
    """The bytes a text part's body takes in the message, after its transfer encoding."""
    _, body = _encoded_text(text)
    return len(body) + body.count(b"\n")  # each line break goes as CRLF


def _encoded_text(text: str) -> tuple[str, bytes]:
    """A text body's transfer encoding and its body so encoded, with LF line breaks."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if lines.isascii() and max(map(len, lines.split("\n"))) <= 998:
        encoding, body = "7bit", lines.encode("ascii")
    else:  # RFC 2045 6.7: soft line breaks keep every line within 76 characters
        encoding = "quoted-printable"
        body = binascii.b2a_qp(lines.encode("utf-8"), quotetabs=False, istext=True)
    if not body.endswith(b"\n"):
        body += b"\n"
    return encoding, body


def _multipart(subtype: str, parts: Sequence[bytes], root_type: str = "") -> bytes:
    # Derived from the content, so a preview and the sent message match byte for byte; the "=_"
    # prefix cannot occur in base64 or quoted-printable text. SHA-256 rather than BLAKE2: CPUs
    # with SHA extensions (most x86 and ARM ones now) hash twice as fast with it.
    digest = hashlib.sha256(b"".join(parts)).hexdigest()[:24]
    boundary = f"=_{subtype[:3]}{digest}".encode("ascii")
    out = [
        b"Content-Type: multipart/",
        subtype.encode("ascii"),
        b'; boundary="',
        boundary,
        b'"',
        f'; type="{root_type}"'.encode("ascii") if root_type else b"",
        b"\r\n\r\n",
    ]
    # RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter, so each part keeps
    # its own final line break.
    for index, part in enumerate(parts):
        out += [CRLF if index else b"", b"--", boundary, CRLF, part]
    out += [CRLF, b"--", boundary, b"--", CRLF]
    return b"".join(out)


def address_header(name: str, box: Mailbox) -> bytes:
    """`Name: phrase <address>`: the address in its envelope form, which is UTF-8 as written
    when the local part is not ASCII (RFC 6532 3.2: the message then travels with SMTPUTF8);
    a display name that is not printable ASCII goes as an encoded-word (RFC 2047), as in any
    other message, so a name never depends on how its address is spelt."""
    return f"{name}: {_mailbox_text(name, box)}\r\n".encode()


def addresses_header(name: str, boxes: Sequence[Mailbox]) -> bytes:
    """`Name: a, b, c`, each mailbox as `address_header` writes one, a line each (folded after
    the comma, RFC 5322 3.2.2)."""
    listed = ",\r\n ".join(_mailbox_text(name, box) for box in boxes)
    return f"{name}: {listed}\r\n".encode()


def _mailbox_text(name: str, box: Mailbox) -> str:
    address = box.envelope_address
    if not box.name:
        return address
    if box.name.isascii() and "=?" not in box.name and _PRINTABLE_ASCII.match(box.name):
        return f"{_quoted_phrase(box.name)} <{address}>"
    phrase = Header(box.name, "utf-8", header_name=name).encode(linesep=_LINESEP)
    return f"{phrase} <{address}>"


def _quoted_phrase(name: str) -> str:
    """A printable ASCII display name, as a quoted string where it holds a special (RFC 5322
    3.2.3): what `email.utils.formataddr` writes, which refuses a non-ASCII address."""
    if not _SPECIALS.search(name):
        return name
    return '"' + _QUOTED_PAIR.sub(r"\\\g<0>", name) + '"'


def _generated_header(name: str, value: str) -> bytes:
    """A header batchmail made itself (ASCII, no spaces to fold at); never encoded: an
    encoded-word is not allowed in a msg-id or a date (RFC 2047 5)."""
    if not value.isascii() or has_line_break(value):
        raise HeaderValueError(name.lower(), value)
    return f"{name}: {value}\r\n".encode("ascii")


def unstructured_header(name: str, value: str) -> bytes:
    """`Name: value` folded at spaces, or as RFC 2047 encoded-words when it is not plain ASCII.

    Text that merely looks like an encoded-word (`=?UTF-8?Q?=0A?=`) is encoded too, so a reader
    decodes it back to the same literal text instead of to a line break.
    """
    if has_line_break(value):
        raise HeaderValueError(name.lower(), value)
    words = value.split(" ")
    if _PRINTABLE_ASCII.match(value) and "=?" not in value and max(map(len, words)) < _MAX_LINE:
        return _fold(name, words)
    return (
        f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=_LINESEP)}\r\n".encode()
    )


def _fold(name: str, words: Sequence[str]) -> bytes:
    """RFC 5322 2.2.3 folding: a CRLF goes in before a space, never inside a word."""
    lines, current = [], f"{name}:"
    for word in words:
        if len(current) + 1 + len(word) > _MAX_LINE and current.strip() not in ("", f"{name}:"):
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
