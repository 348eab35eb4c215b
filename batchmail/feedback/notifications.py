"""Delivery status notifications (RFC 3464) and abuse reports (RFC 5965), read from a message's
bytes with the standard library's `email` package.

A notification is data from strangers: nothing in it is executed or rendered, and every value
taken from it is made one line of printable text before anyone sees it (`one_line`).
"""

from __future__ import annotations

import email
import email.utils
import hashlib
import re
import unicodedata
from email.message import Message

from msgspec import Struct

from batchmail.state.feedback import FeedbackKind as Kind

MAX_SHOWN = 200  # characters of a value taken from a notification, when shown
# RFC 3464 2.3.4: class.subject.detail, the class 2, 4 or 5.
_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})")
# Fields of a notification that may name the address it was sent to: with VERP, the bounce
# address of one recipient (RFC 5321 4.4 gives the envelope; these are what delivery kept).
# RFC 5965 7.3: the feedback types that report a message as unwanted; `not-spam` says the
# opposite, and `auth-failure` (RFC 6591) is about the sender's authentication, not a person.
COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})
ADDRESSED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


class Finding(Struct, frozen=True):
    """One recipient a notification speaks of."""

    kind: Kind
    status: str  # 5.1.1, 4.4.1, or the feedback type of an abuse report
    diagnostic: str  # one line
    final_recipient: str | None  # the address, as the notification gives it
    original_recipient: str | None = None


class Notification(Struct, frozen=True):
    """What a message says, when it is a report: `findings` is empty when it is not."""

    key: str  # its Message-ID, else a digest of its bytes: the same message read twice
    subject: str  # one line
    findings: tuple[Finding, ...] = ()
    message_ids: tuple[str, ...] = ()  # of the original message, most trusted first
    addressed_to: tuple[str, ...] = ()  # addresses it was delivered to (for VERP)
    not_report: str = ""  # why it is not one

    @property
    def is_report(self) -> bool:
        return bool(self.findings)


def one_line(value: object, limit: int = MAX_SHOWN) -> str:
    """Printable text on one line: control and format characters (terminal escapes, line
    breaks, bidirectional overrides) become spaces, runs of space one, and long values are cut."""
    text = "".join(
        " " if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"} else c for c in str(value)
    )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_notification(data: bytes) -> Notification:
    """What a message's bytes are; never raises."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        message = email.message_from_bytes(data)
        return _read(message, digest)
    # A notification is untrusted input: whatever the parser meets in it (a header it cannot
    # decode, a charset it does not know), the message is just not a report.
    except Exception as exc:
        return Notification(digest, "", not_report=f"unreadable: {one_line(type(exc).__name__)}")


def _read(message: Message, digest: str) -> Notification:
    own_id = _field(message, "Message-ID")
    key = own_id if own_id else digest
    subject = one_line(_field(message, "Subject"))
    report_type = message.get_param("report-type", "", header="content-type")
    if message.get_content_type() != "multipart/report" or not isinstance(report_type, str):
        return Notification(key, subject, not_report="not a delivery report or abuse report")
    parts = _parts(message)
    found: tuple[Finding, ...]
    if report_type.lower() == "delivery-status":
        found = _delivery_status(parts)
    elif report_type.lower() == "feedback-report":
        found = _feedback_report(parts)
    else:
        return Notification(key, subject, not_report=f"a {one_line(report_type, 40)} report")
    if not found:
        return Notification(key, subject, not_report="a report of no failure, delay or abuse")
    return Notification(key, subject, found, _original_ids(message, parts), _addressed_to(message))


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _field(message: Message, name: str) -> str:
    value = message.get(name)
    return one_line(value, 1000) if value is not None else ""


def _delivery_status(parts: list[Message]) -> tuple[Finding, ...]:
    """RFC 3464 2.1: the per-message fields, then one block of fields per recipient. The
    parser reads message/delivery-status as a list of those blocks."""
    found = []
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:
            finding = _recipient_block(block) if isinstance(block, Message) else None
            if finding is not None:
                found.append(finding)
    return tuple(found)


def _recipient_block(block: Message) -> Finding | None:
    match = _STATUS.match(_field(block, "Status"))
    if match is None or match.group(1) == "2":
        return None  # delivered, relayed, expanded: nothing to act on
    kind = Kind.BOUNCED if match.group(1) == "5" else Kind.DELAYED
    return Finding(
        kind,
        ".".join(match.groups()),
        _field(block, "Diagnostic-Code"),
        _typed_address(_field(block, "Final-Recipient")),
        _typed_address(_field(block, "Original-Recipient")),
    )


def _feedback_report(parts: list[Message]) -> tuple[Finding, ...]:
    """RFC 5965 3.1: the second part, message/feedback-report, holds fields like a header."""
    for part in parts:
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _fields_of(part)
        if fields is None:
            return ()
        feedback_type = (one_line(fields.get("Feedback-Type", ""), 40) or "abuse").lower()
        if feedback_type not in COMPLAINTS:
            return ()
        recipient = _bare_address(_field(fields, "Original-Rcpt-To"))
        return (Finding(Kind.COMPLAINED, feedback_type, "", recipient),)
    return ()


def _fields_of(part: Message) -> Message | None:
    """A part's body read as header fields (message/feedback-report, text/rfc822-headers)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # a parser that read it as a message already
        return payload[0] if payload and isinstance(payload[0], Message) else None
    if not isinstance(payload, str):
        return None
    return email.message_from_string(payload.lstrip("\r\n"))


def _original_ids(message: Message, parts: list[Message]) -> tuple[str, ...]:
    """The original message's Message-ID: from the returned message or its header (RFC 3464
    2, RFC 5965 2), then from the notification's own In-Reply-To and References."""
    ids: list[str] = []
    for part in parts:
        original: Message | None = None
        if part.get_content_type() in {"message/rfc822", "message/global"}:
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            original = first if isinstance(first, Message) else None
        elif part.get_content_type() in {"text/rfc822-headers", "text/global-headers"}:
            original = _fields_of(part)
        if isinstance(original, Message):
            ids.append(_field(original, "Message-ID"))
    for name in ("In-Reply-To", "References"):
        ids.extend(re.findall(r"<[^<>\s]+>", _field(message, name)))
    return tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))


def _addressed_to(message: Message) -> tuple[str, ...]:
    values = [str(v) for name in ADDRESSED_TO for v in message.get_all(name, [])]
    found = [address for _, address in email.utils.getaddresses(values) if "@" in address]
    return tuple(dict.fromkeys(one_line(a) for a in found))


def _typed_address(value: str) -> str | None:
    """`rfc822; user@example.com` (RFC 3464 2.3.2): the address, when its type is one."""
    kind, _, address = value.partition(";")
    if not address or kind.strip().lower() not in {"rfc822", "utf-8"}:
        return None
    return _bare_address(address)


def _bare_address(value: str) -> str | None:
    address = value.strip().strip("<>").strip()
    return address if "@" in address and " " not in address else None
