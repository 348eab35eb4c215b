"""The send loop's journal records, appended to a file of their own before they reach SQLite.

An SQLite commit costs a dozen system calls (locks, page reads, WAL writes) and, with several
sending processes, a lock shared between them; a record appended with one `write()` costs one
call and no lock. Both survive the process being killed: the record is in the kernel's page
cache once `write()` returns, as a WAL commit with synchronous=NORMAL is. So the crash guarantee
is unchanged: a message's record is written before its transaction starts and right after the
reply. The journal folds the records in, many per transaction (see Journal.fold_logs).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from batchmail.errors import StateError

SUFFIX = ".log"


class RecordLog:
    """One process's append-only file of records (JSON arrays, one per line)."""

    def __init__(self, directory: Path, prefix: str):
        self.path = directory / f"{prefix}{secrets.token_hex(8)}{SUFFIX}"
        self.records: list[list[Any]] = []  # as written: folding them need not read them back
        try:
            directory.mkdir(exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise StateError(f"cannot write the journal: {self.path}: {exc.strerror}") from None

    def append(self, record: list[Any]) -> None:
        """One `write()` per record: O_APPEND writes of threads never interleave."""
        line = msgspec.json.encode(record) + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise StateError(f"cannot write the journal: {self.path}: {exc.strerror}") from None
        if written != len(line):  # a full disk takes what fits; the torn line is never read
            raise StateError(
                f"cannot write the journal: {self.path}: {written} of {len(line)} bytes "
                "written (is the disk full?)"
            )
        self.records.append(record)

    def close(self) -> None:
        os.close(self._fd)


def read_records(path: Path) -> Iterator[list[Any]]:
    """The complete records of a log, in order. A last line without its newline was cut short
    by a full disk or a power loss while it was written: its message was never sent."""
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.endswith(b"\n"):
                return
            try:
                record = msgspec.json.decode(line)
            except ValueError:
                record = None
            if not (isinstance(record, list) and record and isinstance(record[0], str)):
                raise StateError(f"the journal log {path} is damaged at line {number}")
            yield record


def logs_with_prefix(directory: Path, prefix: str) -> list[Path]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(
        directory / name for name in names if name.startswith(prefix) and name.endswith(SUFFIX)
    )
