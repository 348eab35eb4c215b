"""Parse an smtp-sink dump file (-D ... -S MARKER) and describe the captured messages.

Used by throughput.py to check, on a few recipients, that both contenders send comparable
messages: size on the wire, MIME structure, same PDF bytes, same rendered text.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

MARKER = "@@BATCHMAIL-BENCH-MESSAGE@@"


@dataclass(frozen=True)
class Captured:
    """One message as received by smtp-sink."""

    rcpt: str
    wire_bytes: int  # message size with CRLF line ends, as sent in DATA (unstuffed)
    message: EmailMessage

    def structure(self) -> str:
        return _structure(self.message)

    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def part_payload(self, content_type: str) -> bytes | None:
        for part in self.message.walk():
            if part.get_content_type() == content_type or (
                content_type == "attachment" and part.get_filename()
            ):
                payload = part.get_payload(decode=True)
                return payload if isinstance(payload, bytes) else None
        return None


def _structure(part: EmailMessage) -> str:
    if part.is_multipart():
        inner = ", ".join(_structure(sub) for sub in part.iter_parts())  # type: ignore[arg-type]
        return f"{part.get_content_type()}[{inner}]"
    name = part.get_filename()
    return f"{part.get_content_type()} {name}" if name else part.get_content_type()


def _split_sink_headers(lines: list[str]) -> tuple[str, list[str]]:
    """Drop smtp-sink's own X-*/Received header block; return (first rcpt, message lines)."""
    rcpt = ""
    index = 0
    while index < len(lines) and not lines[index].startswith("Received:"):
        if lines[index].startswith("X-Rcpt-Args:"):
            rcpt = lines[index].split(":", 1)[1].strip().strip("<>")
        index += 1
    index += 1  # the Received: line
    while index < len(lines) and lines[index].startswith(("\t", " ")):
        index += 1
    body = lines[index:]
    if body and body[-1] == "":
        body = body[:-1]  # smtp-sink appends an empty line after each message
    return rcpt, body


def parse_dump(path: Path) -> list[Captured]:
    """All messages in a dump written with `-S MARKER\\n`."""
    text = path.read_text(encoding="utf-8", errors="replace")
    captured = []
    for chunk in text.split(MARKER + "\n")[1:]:
        rcpt, lines = _split_sink_headers(chunk.split("\n"))
        raw = "\r\n".join(lines) + "\r\n"
        message = email.message_from_string(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        captured.append(Captured(rcpt, len(raw.encode("utf-8")), message))
    return captured


def text_differences(first: Captured, second: Captured) -> list[str]:
    """Which of subject / text / html / attachment differ between two renderings."""
    diffs = []
    if first.subject() != second.subject():
        diffs.append(f"subject ({first.subject()!r} vs {second.subject()!r})")
    for kind in ("text/plain", "text/html", "attachment"):
        one, two = first.part_payload(kind), second.part_payload(kind)
        if kind != "attachment" and one is not None and two is not None:
            one, two = one.strip().replace(b"\r\n", b"\n"), two.strip().replace(b"\r\n", b"\n")
        if one != two:
            diffs.append(kind)
    return diffs
