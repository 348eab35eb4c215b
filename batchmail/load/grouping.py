"""`group_by: FIELD`: the rows with the same value of FIELD make one recipient, with the first
row's fields and `rows`, every row of the group in file order. The rows wait in a temporary
database on disk, as the duplicate check's addresses do, so a million rows take little memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from batchmail.errors import Problem
from batchmail.load.addresses import AddressError, parse_mailbox
from batchmail.load.rows import Row
from batchmail.load.settings import Grouping

# SQLite's page cache, in KiB when negative; its sort (the index built after the rows are in)
# spills to the temporary file beyond it.
_CACHE_SIZE = -2048


def grouped(rows: Iterable[Row], grouping: Grouping, problems: list[Problem]) -> Iterator[Row]:
    """One row per group, in the order of each group's first row; a row without the field goes
    to `problems`."""
    store = _GroupStore()
    try:
        for row in rows:
            value = row.fields.get(grouping.field)
            if value is None or value == "":
                message = f"this row has no {grouping.field!r} to group by"
                problems.append(Problem(row.origin, message, "group_by"))
                continue
            store.add(group_key(value), row)
        yield from store.groups()
    finally:
        store.db.close()


def group_key(value: Any) -> str:
    """Values compared as addresses when they are addresses (case, IDN forms and display names
    aside, as the de-duplication of recipients compares them), else as they are."""
    if isinstance(value, str):
        try:
            return "address:" + parse_mailbox(value).person_key
        except AddressError:
            return "text:" + value
    return "value:" + msgspec.json.encode(value, order="sorted").decode()


class _GroupStore:
    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a temporary file, deleted when closed
        self.db.execute(f"PRAGMA cache_size={_CACHE_SIZE}")
        self.db.execute("CREATE TABLE groups (key TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID")
        self.db.execute(
            "CREATE TABLE rows (seq INTEGER, fields BLOB, origin TEXT, path TEXT, n INTEGER)"
        )
        self.count = 0
        self.cells: Mapping[str, str] | None = None  # a workbook's, the same for all its rows
        self.encoder = msgspec.msgpack.Encoder()

    def add(self, key: str, row: Row) -> None:
        found = self.db.execute("SELECT seq FROM groups WHERE key = ?", (key,)).fetchone()
        if found is None:
            found = (self.count,)
            self.db.execute("INSERT INTO groups VALUES (?, ?)", (key, self.count))
            self.count += 1
        fields = self.encoder.encode(row.fields)
        self.db.execute(
            "INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
            (found[0], fields, row.origin, row.path, row.number),
        )
        if row.cells is not None:
            self.cells = row.cells

    def groups(self) -> Iterator[Row]:
        self.db.execute("CREATE INDEX in_groups ON rows (seq)")  # its entries: by (seq, rowid)
        decode = msgspec.msgpack.Decoder(dict[str, Any]).decode
        members: list[Row] = []
        query = "SELECT seq, fields, origin, path, n FROM rows ORDER BY seq, rowid"
        current = None
        for seq, fields, origin, path, number in self.db.execute(query):
            if seq != current and members:
                yield _group(members)
                members = []
            current = seq
            cells = self.cells if number else None
            members.append(Row(decode(fields), origin, path, cells=cells, number=number))
        if members:
            yield _group(members)


def _group(members: list[Row]) -> Row:
    first = members[0]
    fields = {**first.fields, "rows": [member.fields for member in members]}
    return Row(fields, first.origin, first.path, cells=first.cells, number=first.number)
