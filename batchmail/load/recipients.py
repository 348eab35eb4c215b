"""Recipients as a stream: inline ones first, then the data file's, checked and de-duplicated."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from msgspec import Struct

from batchmail.errors import Problem
from batchmail.load.addresses import AddressError, Mailbox, has_line_break, mailbox
from batchmail.load.data_file import read_data_file
from batchmail.load.grouping import grouped
from batchmail.load.row_filter import RowSelection, RowTest
from batchmail.load.rows import Row
from batchmail.load.settings import Job

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


class RecipientSource:
    """A job's recipients, read as a stream: a first pass checks every row and finds the
    repeated addresses; a second pass yields the same recipients again, cheaply."""

    def __init__(self, job: Job, test: RowTest | None = None):
        self.job = job
        self._repeated_rows: set[int] | None = None  # raw row numbers of repeated addresses
        self._selection = RowSelection(test) if test is not None else None

    @property
    def filtered(self) -> int:
        """How many rows `where` rejected in the last pass."""
        return self._selection.rejected if self._selection is not None else 0

    def _rows(self, problems: list[Problem]) -> Iterator[Row]:
        """The rows `where` keeps, grouped by `group_by`: one row for each recipient."""
        rows = _rows(self.job)
        if self._selection is not None:
            rows = self._selection.kept(rows, problems)
        if self.job.group_by is not None:
            rows = grouped(rows, self.job.group_by, problems)
        return rows

    def first_pass(self, problems: list[Problem], warn: Warn) -> Iterator[Recipient]:
        """Every valid, first-seen recipient; invalid rows go to `problems`, repeats to `warn`."""
        seen = _SeenAddresses()
        repeated: set[int] = set()
        repeats: dict[str, list[str]] = {}
        seq = 0
        for number, row in enumerate(self._rows(problems)):
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
        for number, row in enumerate(self._rows([])):
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


def _to_recipient(row: Row, seq: int, problems: list[Problem], checked: bool) -> Recipient | None:
    address, name = row.fields.get("email"), row.fields.get("name")
    if not isinstance(address, str):
        message = f"{address!r} is not an address"
        problems.append(Problem(row.at("email"), message, f"{row.path}email"))
        return None
    if name is not None and (not isinstance(name, str) or has_line_break(name)):
        reason = "contains a line break" if isinstance(name, str) else "is not text"
        message = f"{name!r} {reason} (recipient {address})"
        problems.append(Problem(row.at("name"), message, f"{row.path}name"))
        return None
    try:
        box = mailbox(address, name, checked=checked)
    except AddressError as exc:
        problems.append(Problem(row.at("email"), str(exc), f"{row.path}email"))
        return None
    return Recipient(seq, box, row.fields, row.origin)


def _rows(job: Job) -> Iterator[Row]:
    for index, inline in enumerate(job.recipients):
        yield Row(inline.fields, inline.where, f"recipients[{index}].")
    if job.recipients_file is not None:
        file, where = job.recipients_file, job.recipients_file_where
        yield from read_data_file(file, where, job.recipients_options)
