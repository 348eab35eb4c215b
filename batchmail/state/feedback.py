"""What `batchmail bounces` recorded: each recipient a notification named, in a table of the
job's journal, once per notification and address, so that reading a mailbox again adds nothing.
"""

from __future__ import annotations

import sqlite3
import time
from enum import StrEnum
from typing import Any

from msgspec import Struct

from batchmail.errors import StateError
from batchmail.state.job_entries import is_of_job

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    job        TEXT NOT NULL,
    notice     TEXT NOT NULL,  -- the notification's Message-ID, else a digest of its bytes
    address    TEXT NOT NULL,  -- the address it names, as Mailbox.person_key
    run_id     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,  -- bounced | complained | delayed
    status     TEXT NOT NULL,  -- 5.1.1, 4.4.1, or the abuse report's feedback type
    diagnostic TEXT NOT NULL,
    recorded   REAL NOT NULL,
    PRIMARY KEY (job, notice, address)
) WITHOUT ROWID;
"""


class FeedbackKind(StrEnum):
    """What a notification says of a recipient."""

    BOUNCED = "bounced"  # a permanent failure (5.x.x): suppressed
    COMPLAINED = "complained"  # an abuse report (RFC 5965): suppressed
    DELAYED = "delayed"  # a transient failure (4.x.x): recorded, never suppressed


SUPPRESSED_KINDS = frozenset({FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED})


class FeedbackEntry(Struct, frozen=True):
    notice: str
    address: str
    run_id: str
    seq: int
    kind: FeedbackKind
    status: str
    diagnostic: str


class Delivered(Struct, frozen=True):
    """A message of the job the journal knows: its run, its recipient's seq and address."""

    run_id: str
    seq: int
    email: str


class FeedbackBook:
    """The feedback table of a job's journal, on the journal's connection (under its lock)."""

    def __init__(self, db: sqlite3.Connection, job: str):
        self.db = db
        self.job = job
        # Shards of the job have entries of their own; a function, so no name is read as a pattern.
        db.create_function("is_of_job", 2, is_of_job, deterministic=True)
        try:
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the journal's feedback table: {exc}") from None

    def delivered(self, run_id: str, seq: int) -> Delivered | None:
        """The job's message of that run and seq, if the journal has it."""
        row = self._one(
            "SELECT d.email FROM deliveries d JOIN runs r USING (run_id) "
            "WHERE is_of_job(r.job, ?) AND d.run_id = ? AND d.seq = ?",
            (self.job, run_id, seq),
        )
        return Delivered(run_id, seq, row[0]) if row else None

    def latest_to(self, email: str) -> Delivered | None:
        """The job's latest message to an address (as the journal keeps it)."""
        row = self._one(
            "SELECT d.run_id, d.seq FROM deliveries d JOIN runs r USING (run_id) "
            "WHERE is_of_job(r.job, ?) AND d.email = ? "
            "ORDER BY r.started DESC, r.rowid DESC LIMIT 1",
            (self.job, email),
        )
        return Delivered(row[0], row[1], email) if row else None

    def has(self, entry: FeedbackEntry) -> bool:
        """Whether this notification's entry for the address is recorded."""
        row = self._one(
            "SELECT 1 FROM feedback WHERE job = ? AND notice = ? AND address = ?",
            (self.job, entry.notice, entry.address),
        )
        return row is not None

    def record_all(self, entries: list[FeedbackEntry]) -> int:
        """Record entries in one transaction; how many were new (an entry of the same
        notification and address is kept as it was)."""
        now = time.time()
        rows = [
            (self.job, e.notice, e.address, e.run_id, e.seq, e.kind, e.status, e.diagnostic, now)
            for e in entries
        ]
        try:
            before = self.db.total_changes
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StateError(f"cannot write the journal: {exc}") from None
        return self.db.total_changes - before

    def entries(self) -> list[FeedbackEntry]:
        rows = self._all(
            "SELECT notice, address, run_id, seq, kind, status, diagnostic FROM feedback "
            "WHERE job = ? ORDER BY recorded, notice, address",
            (self.job,),
        )
        return [FeedbackEntry(n, a, r, s, FeedbackKind(k), st, d) for n, a, r, s, k, st, d in rows]

    def _one(self, sql: str, parameters: tuple[object, ...]) -> tuple[Any, ...] | None:
        rows = self._all(sql, parameters)
        return rows[0] if rows else None

    def _all(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the journal: {exc}") from None
