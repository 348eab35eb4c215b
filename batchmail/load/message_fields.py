"""The job's message fields beyond subject and body (cc, bcc, headers, envelope_from) and its
suppression files, read from the document and checked beyond what the schema says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchmail.errors import invalid
from batchmail.load.settings import MessageFields
from batchmail.load.yaml_file import Located

# Fields batchmail writes itself, or that would change what the message is or where it goes
# (RFC 5322 3.6, RFC 2045, RFC 6376, RFC 5321 4.4): a job may not set them through `headers`.
STRUCTURAL_FIELDS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "dkim-signature",
        "return-path",
        "received",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_STRUCTURAL_PREFIXES = ("content-", "resent-", "arc-")


def is_structural(name: str) -> bool:
    lowered = name.lower()
    return lowered in STRUCTURAL_FIELDS or lowered.startswith(_STRUCTURAL_PREFIXES)


def message_fields(data: dict[str, Any], doc: Located) -> MessageFields:
    keys = ("cc", "bcc", "envelope_from", "reply_to")
    where: dict[str, str] = {key: doc.where((key,)) for key in keys if key in data}
    headers = data.get("headers", {})
    for name in headers:
        located = doc.where(("headers", name))
        if is_structural(name):
            raise invalid(
                located,
                f"headers: {name!r} is a field batchmail sets itself; "
                "use the job's own key for it (from, cc, bcc, reply_to, subject) or leave it out",
                f"headers.{name}",
            )
        where[f"headers.{name}"] = located
    return MessageFields(
        cc=_templates(data.get("cc")),
        bcc=_templates(data.get("bcc")),
        headers=tuple((name, value) for name, value in headers.items()),
        envelope_from=data.get("envelope_from"),
        reply_to=data["reply_to"] if is_template(data.get("reply_to", "")) else None,
        where=where,
    )


def is_template(text: str) -> bool:
    """Whether a value holds Jinja2 markup; one that does not is the same for every recipient,
    and is checked once, when the job loads."""
    return any(mark in text for mark in ("{{", "{%", "{#"))


def suppress_files(data: dict[str, Any], base_dir: Path) -> tuple[Path, ...]:
    value = data.get("suppress", ())
    names = [value] if isinstance(value, str) else list(value)
    return tuple(base_dir / name for name in names)


def _templates(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
