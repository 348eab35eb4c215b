"""The journal's tables: runs, their invocations, each recipient's delivery, and staging."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    job      TEXT NOT NULL,
    digest   TEXT NOT NULL,
    total    INTEGER NOT NULL,
    started  REAL NOT NULL,
    finished REAL            -- set once every recipient is sent
);
CREATE TABLE IF NOT EXISTS invocations (
    run_id   TEXT NOT NULL,
    number   INTEGER NOT NULL,
    started  REAL NOT NULL,
    finished REAL,
    status   TEXT,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS deliveries (
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    email       TEXT NOT NULL,
    state       TEXT NOT NULL,  -- pending | sent | failed | deferred | unknown
    code        INTEGER,
    response    TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    size        INTEGER,
    attachments TEXT,
    invocation  INTEGER,        -- the invocation that last touched it
    updated     REAL,
    sent_at     REAL,
    refused     TEXT,           -- copies refused: JSON [{email, smtp_code, smtp_response}]
    waiting     INTEGER,        -- how many of them wait for a retry (4yz); NULL: none
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folded_logs (
    name TEXT PRIMARY KEY   -- a record log folded in, until its file is deleted
);
CREATE INDEX IF NOT EXISTS deliveries_sent_at ON deliveries (sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS staging (  -- validated recipients, until a run takes them over
    job TEXT NOT NULL, seq INTEGER NOT NULL, email TEXT NOT NULL, size INTEGER, attachments TEXT,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
"""

# Columns added since the first journals: one made by an earlier version gains them when opened.
ADDED_COLUMNS = (
    ("deliveries", "refused", "TEXT"),
    ("deliveries", "waiting", "INTEGER"),
)
# Only the few recipients with refused copies are in it: a job without copies never touches it.
INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_refused ON deliveries (run_id, seq)
    WHERE refused IS NOT NULL;
"""


def upgrade(db: sqlite3.Connection) -> None:
    """Add the columns a journal of an earlier version lacks, then the indexes on them."""
    if any(column not in _columns(db, table) for table, column, _ in ADDED_COLUMNS):
        db.execute("BEGIN IMMEDIATE")  # another process may be upgrading the same journal
        try:
            for table, column, declaration in ADDED_COLUMNS:
                if column not in _columns(db, table):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    db.executescript(INDEXES)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
