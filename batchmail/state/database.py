"""The journal's SQLite connection: opened in WAL mode with its tables made or upgraded, reads
and writes taking turns on it, and closed around a fork."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from batchmail.errors import StateError
from batchmail.state.tables import SCHEMA, upgrade

# SQLite's page cache, in KiB when negative: its default, 2 MiB a connection, fills up as a list
# grows to 100,000 recipients, and every sending process has its connections.
CACHE_SIZE = -512


class Database:
    """One connection to the journal's database, shared by the threads of a process."""

    def __init__(self, path: Path | str, write_lock: AbstractContextManager[Any] | None = None):
        """`write_lock`: shared by processes writing one journal, so that they queue for it
        instead of meeting SQLite's busy handler, which sleeps a millisecond or more.

        The threads of a process take turns on the connection for reads too: a read open on it
        while another thread writes would make that write fail at once (SQLITE_BUSY_SNAPSHOT)
        whenever another process has committed since the read began."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._write_lock: AbstractContextManager[Any] = write_lock or nullcontext()
        self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA cache_size={CACHE_SIZE}")
            db.executescript(SCHEMA)
            upgrade(db)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the journal {self.path}: {exc}") from None
        return db

    @contextmanager
    def disconnected(self) -> Iterator[None]:
        """The connection closed for a while, then opened anew: no connection may be open while
        another process starts as a copy of this one. SQLite keeps the POSIX locks of a file in
        per-process memory, which the copy would inherit, wrong, and share with its own new
        connection. See "Carrying an open database connection across a fork()" in
        https://www.sqlite.org/howtocorrupt.html"""
        self.db.close()
        try:
            yield
        finally:
            self.db = self._connect()

    def close(self) -> None:
        self.db.close()

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            try:
                return self.db.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"cannot read the journal: {exc}") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._write_lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"cannot write the journal: {exc}") from None
                raise
