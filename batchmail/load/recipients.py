"""Recipients as a stream: inline ones first, then the data file's, checked and de-duplicated."""

from __future__ import annotations

import codecs
import csv
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from msgspec import Struct

from batchmail.errors import Problem, invalid
from batchmail.load.addresses import AddressError, Mailbox, has_line_break, mailbox
from batchmail.load.job import display_path
from batchmail.load.settings import Job
from batchmail.load.yaml_file import load_yaml

Warn = Callable[[str], None]
# SQLite's page cache for the addresses seen, in KiB when negative: its default, 2 MiB, would
# fill up with a list of 100,000 recipients, once in every process that reads the list.
_SEEN_CACHE_SIZE = -512


class Recipient(Struct, frozen=True):
    seq: int  # 1-based position among the job's recipients, after de-duplication
    mailbox: Mailbox
    fields: Mapping[str, Any]
    origin: str  # `file:line` (or `file: item N`) it came from

    @property
    def email(self) -> str:
        return self.mailbox.address

    def describe(self) -> str:
        return f"recipient {self.seq}, {self.email}"


class _Row(Struct, frozen=True):
    fields: Mapping[str, Any]
    origin: str
    path: str = ""  # where the row sits in the job file (`recipients[2].`), for inline ones


class RecipientSource:
    """A job's recipients, read as a stream: a first pass checks every row and finds the
    repeated addresses; a second pass yields the same recipients again, cheaply."""

    def __init__(self, job: Job):
        self.job = job
        self._repeated_rows: set[int] | None = None  # raw row numbers of repeated addresses

    def first_pass(self, problems: list[Problem], warn: Warn) -> Iterator[Recipient]:
        """Every valid, first-seen recipient; invalid rows go to `problems`, repeats to `warn`."""
        seen = _SeenAddresses()
        repeated: set[int] = set()
        repeats: dict[str, list[str]] = {}
        seq = 0
        for number, row in enumerate(_rows(self.job)):
            found = _to_recipient(row, seq + 1, problems, checked=False)
            if found is None:
                continue
            key = found.email.casefold()
            first = seen.first_origin(key, row.origin)
            if first is not None:
                repeats.setdefault(key, [first]).append(row.origin)
                repeated.add(number)
                continue
            seq += 1
            yield found
        self._repeated_rows = repeated
        for key, origins in repeats.items():
            listed = ", ".join(origins)
            warn(
                f"{origins[0]}: {key} appears {len(origins)} times ({listed}): it gets one message"
            )

    def repeated_rows(self) -> set[int]:
        """What the first pass learnt, for a second pass in another process (`adopt`)."""
        if self._repeated_rows is None:
            raise RuntimeError("the repeated rows are known after a first pass")
        return self._repeated_rows

    def adopt(self, repeated_rows: set[int]) -> None:
        self._repeated_rows = repeated_rows

    def second_pass(self) -> Iterator[Recipient]:
        """The first pass's recipients again, without its checks and warnings."""
        if self._repeated_rows is None:
            raise RuntimeError("the second pass over recipients needs a first pass")
        seq = 0
        for number, row in enumerate(_rows(self.job)):
            if number in self._repeated_rows:
                continue
            found = _to_recipient(row, seq + 1, [], checked=True)
            if found is not None:
                seq += 1
                yield found


class _SeenAddresses:
    """The addresses met so far, in a private temporary database on disk: a million of them in
    a Python set would take far more memory than the rest of a run."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a temporary file, deleted when closed
        self.db.execute(f"PRAGMA cache_size={_SEEN_CACHE_SIZE}")
        self.db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, origin TEXT) WITHOUT ROWID")

    def first_origin(self, key: str, origin: str) -> str | None:
        """None for a new address; else where it was first seen."""
        if self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, origin)).rowcount:
            return None
        found: str = self.db.execute("SELECT origin FROM seen WHERE key = ?", (key,)).fetchone()[0]
        return found


def _to_recipient(row: _Row, seq: int, problems: list[Problem], checked: bool) -> Recipient | None:
    address, name = row.fields.get("email"), row.fields.get("name")
    if not isinstance(address, str):
        problems.append(Problem(row.origin, f"{address!r} is not an address", f"{row.path}email"))
        return None
    if name is not None and (not isinstance(name, str) or has_line_break(name)):
        reason = "contains a line break" if isinstance(name, str) else "is not text"
        message = f"{name!r} {reason} (recipient {address})"
        problems.append(Problem(row.origin, message, f"{row.path}name"))
        return None
    try:
        box = mailbox(address, name, checked=checked)
    except AddressError as exc:
        problems.append(Problem(row.origin, str(exc), f"{row.path}email"))
        return None
    return Recipient(seq, box, row.fields, row.origin)


def _rows(job: Job) -> Iterator[_Row]:
    for index, inline in enumerate(job.recipients):
        yield _Row(inline.fields, inline.where, f"recipients[{index}].")
    if job.recipients_file is not None:
        yield from read_data_file(job.recipients_file, job.recipients_file_where)


def read_data_file(path: Path, where: str) -> Iterator[_Row]:
    """Rows of a .csv, .json, .jsonl or .yaml file, streamed where the format allows."""
    shown = display_path(path)
    readers = {
        ".csv": _csv_rows,
        ".json": _json_rows,
        ".jsonl": _jsonl_rows,
        ".yaml": _yaml_rows,
        ".yml": _yaml_rows,
    }
    reader = readers[path.suffix.lower()]
    try:
        yield from reader(path, shown)
    except FileNotFoundError:
        raise invalid(where, f"recipients file not found: {shown}", "recipients_file") from None
    except UnicodeDecodeError as exc:
        raise invalid(shown, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise invalid(where, f"cannot read {shown}: {exc.strerror}", "recipients_file") from None


def _text(path: Path) -> TextIO:
    return path.open(encoding="utf-8-sig", newline="")  # a spreadsheet's BOM is not data


def _csv_rows(path: Path, shown: str) -> Iterator[_Row]:
    with _text(path) as stream:
        yield from _csv_stream(stream, shown)


def _csv_stream(stream: TextIO, shown: str) -> Iterator[_Row]:
    reader = csv.reader(stream)
    header = [name.strip() for name in next(reader, [])]
    if "email" not in header:
        hint = (
            " (the header must name it exactly 'email')"
            if any(h.lower() == "email" for h in header)
            else ""
        )
        raise invalid(f"{shown}:1", f"the header row has no 'email' column{hint}")
    start = reader.line_num + 1  # a quoted field may span lines: name the row's first
    for values in reader:
        origin, start = f"{shown}:{start}", reader.line_num + 1
        if not any(values):
            continue
        if len(values) != len(header):
            raise invalid(origin, f"this row has {len(values)} fields, the header {len(header)}")
        yield _Row(dict(zip(header, values, strict=True)), origin)


def _json_rows(path: Path, shown: str) -> Iterator[_Row]:
    import ijson  # noqa: PLC0415 - its C backend takes a while to load: JSON lists only

    with path.open("rb") as stream:
        if stream.read(3) != codecs.BOM_UTF8:
            stream.seek(0)
        try:
            for index, item in enumerate(ijson.items(stream, "item", use_float=True), start=1):
                origin = f"{shown}: item {index}"
                yield _Row(_as_mapping(item, origin), origin)
        except ijson.JSONError as exc:
            raise invalid(shown, f"invalid JSON ({exc}); expected a list of objects") from None


def _jsonl_rows(path: Path, shown: str) -> Iterator[_Row]:
    with _text(path) as stream:
        yield from _jsonl_stream(stream, shown)


def _jsonl_stream(stream: TextIO, shown: str) -> Iterator[_Row]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        origin = f"{shown}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise invalid(origin, f"invalid JSON: {exc.msg}") from None
        except RecursionError:  # the decoder recurses once a level
            raise invalid(origin, "nested too deep to read: refused") from None
        yield _Row(_as_mapping(item, origin), origin)


def _yaml_rows(path: Path, shown: str) -> Iterator[_Row]:
    with _text(path) as stream:
        doc = load_yaml(stream.read(), shown)
    items: Iterable[Any] = doc.data if isinstance(doc.data, list) else [doc.data]
    for index, item in enumerate(items):
        origin = doc.where((index,))
        yield _Row(_as_mapping(item, origin), origin)


def _as_mapping(item: Any, origin: str) -> Mapping[str, Any]:
    if not isinstance(item, dict) or "email" not in item:
        raise invalid(origin, "each recipient is an object with an 'email' field")
    return item
