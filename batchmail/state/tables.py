"""The journal's tables: runs, their invocations, each recipient's delivery, and staging."""

from __future__ import annotations

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
