"""Appending to a job's first suppression file: the addresses no entry of it covers yet (as a
run matches them, `load/suppression.py`), one a line, or a row of its `email` column for a
`.csv`; the file is created when missing."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from msgspec import structs

from batchmail.errors import StateError
from batchmail.load.addresses import Mailbox
from batchmail.load.settings import Job
from batchmail.load.suppression import NO_SUPPRESSION, load_suppression


def append_new(job: Job, addresses: Iterable[Mailbox]) -> list[Mailbox]:
    """Append the addresses the first file does not cover (by address or domain); those
    appended. A line of the file that is neither is a job error, as for a run."""
    path = job.suppress[0]
    text = _text(path)
    listed = load_suppression(structs.replace(job, suppress=(path,))) if text else NO_SUPPRESSION
    added: list[Mailbox] = []
    seen: set[str] = set()
    for address in addresses:
        if listed.listed(address) is None and address.person_key not in seen:
            seen.add(address.person_key)
            added.append(address)
    if added:
        columns = _csv_header(text) if path.suffix.lower() == ".csv" else None
        _write(path, text, _lines(added, columns))
    return added


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read the suppression file {path}: {exc}") from None


def _csv_header(text: str) -> list[str]:
    """The first row when it is a header (it names `email`, or its first cell is no address),
    as `load/suppression.py` reads it."""
    first = next(csv.reader(io.StringIO(text)), [])
    cells = [cell.strip() for cell in first]
    is_header = any(c.lower() == "email" for c in cells) or bool(cells and "@" not in cells[0])
    return cells if is_header else []


def _lines(added: list[Mailbox], columns: list[str] | None) -> str:
    if columns is None:
        return "".join(f"{address.address}\n" for address in added)
    names = [c.lower() for c in columns]
    column = names.index("email") if "email" in names else 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for address in added:
        row = [""] * max(len(columns), 1)
        row[column] = address.address
        writer.writerow(row)
    return out.getvalue()


def _write(path: Path, text: str, lines: str) -> None:
    """Append in one write, after a line break if the file's last line lacks one."""
    prefix = "\n" if text and not text.endswith(("\n", "\r")) else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8", newline="") as file:
            file.write(prefix + lines)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise StateError(f"cannot write the suppression file {path}: {exc}") from None
