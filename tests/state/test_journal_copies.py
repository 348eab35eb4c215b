"""The journal keeps each delivery's refused copies (cc, bcc): from the finish record of the
message, then from the records of retries to the copies alone; the row stays the primary
recipient's. Journals made by earlier versions gain the columns when opened."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from batchmail.state.journal import Journal, journal_path
from batchmail.state.records import RefusedCopy, Run, Staged
from batchmail.state.states import RunStatus

CC_LATER = RefusedCopy("cc@example.com", 451, "4.3.0 Try later")
BCC_NEVER = RefusedCopy("bcc@example.org", 550, "5.1.1 No such user")

# The deliveries table as the versions before copies made it.
EARLIER_DELIVERIES = """
CREATE TABLE deliveries (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, email TEXT NOT NULL, state TEXT NOT NULL,
    code INTEGER, response TEXT, attempts INTEGER NOT NULL DEFAULT 0, size INTEGER,
    attachments TEXT, invocation INTEGER, updated REAL, sent_at REAL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
INSERT INTO deliveries (run_id, seq, email, state, code, response, attempts, invocation)
    VALUES ('r1', 1, 'user1@example.com', 'sent', 250, 'ok', 1, 1);
"""


def started_run(state: Path, count: int = 2) -> tuple[Journal, Run]:
    journal = Journal(journal_path(state), "job")
    with journal.staging() as stage:
        for seq in range(1, count + 1):
            stage(Staged(seq, f"user{seq}@example.com", 100, []))
    return journal, journal.start_run("digest", count)


def columns(state: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(journal_path(state)) as db:
        return db.execute(
            "SELECT seq, state, code, attempts, invocation, refused, waiting "
            "FROM deliveries ORDER BY seq"
        ).fetchall()


def test_a_journal_of_an_earlier_version_gains_the_columns_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    with sqlite3.connect(journal_path(tmp_path)) as db:
        db.executescript(EARLIER_DELIVERIES)

    journal = Journal(journal_path(tmp_path), "job")
    again = Journal(journal_path(tmp_path), "job")  # opened again: nothing more to add
    old = Run("r1", "digest", 1, 2, resumed=True)
    [delivery] = journal.deliveries(old)
    journal.finish(old, 1, "sent", 250, "ok", refused=[BCC_NEVER])
    journal.fold_logs()
    [after] = again.deliveries(old)

    assert (delivery.email, delivery.state, delivery.refused) == ("user1@example.com", "sent", ())
    assert after.refused == (BCC_NEVER,)


def test_refused_copies_fold_from_the_finish_and_the_copies_records(tmp_path: Path) -> None:
    """Folding after every record is the reference for folding them all at once."""
    results = []
    for fold_every_record, state in ((True, tmp_path / "one"), (False, tmp_path / "all")):
        state.mkdir()
        journal, run = started_run(state)
        times = itertools.count(1000.0)
        journal.clock = lambda times=times: next(times)
        fold = journal.fold_logs if fold_every_record else (lambda: None)
        for seq, finish in (
            (1, ("sent", 250, "ok", [CC_LATER, BCC_NEVER])),
            (2, ("deferred", 421, "busy", [])),
        ):
            journal.begin(run, seq)
            fold()
            state_, code, response, refused = finish
            journal.finish(run, seq, state_, code, response, refused=refused)
            fold()
        journal.fold_logs()
        waiting = journal.waiting_copies(run), journal.copies_waiting(run)
        journal.finish_copies(run, 1, [BCC_NEVER])  # the retry reached cc
        journal.fold_logs()
        results.append((waiting, columns(state), journal.copies_waiting(run)))

    assert results[0] == results[1]
    waiting, rows, left = results[1]
    assert waiting == ([(1, (CC_LATER, BCC_NEVER))], 1)
    # The copies' retry leaves the primary recipient's state, reply and attempts alone.
    assert rows == [
        (1, "sent", 250, 1, 1, '[{"email":"bcc@example.org","smtp_code":550,'
         '"smtp_response":"5.1.1 No such user"}]', None),
        (2, "deferred", 421, 1, 1, None, None),
    ]  # fmt: skip
    assert left == 0


def test_only_the_waiting_copies_of_a_share_are_listed(tmp_path: Path) -> None:
    class Odd:
        index, count = 1, 2

    journal, run = started_run(tmp_path, count=3)
    for seq in (1, 2, 3):
        journal.finish(run, seq, "sent", 250, "ok", refused=[CC_LATER] if seq > 1 else [BCC_NEVER])
    journal.fold_logs()

    assert journal.waiting_copies(run) == [(2, (CC_LATER,)), (3, (CC_LATER,))]
    assert journal.waiting_copies(run, Odd()) == [(3, (CC_LATER,))]
    assert journal.copies_waiting(run) == 2


def test_a_run_is_finished_only_when_no_copy_waits(tmp_path: Path) -> None:
    journal, run = started_run(tmp_path, count=1)
    journal.finish(run, 1, "sent", 250, "ok", refused=[CC_LATER])
    journal.fold_logs()
    journal.end_invocation(run, RunStatus.INCOMPLETE)
    waiting = journal.latest_run()

    journal.finish_copies(run, 1, [])
    journal.fold_logs()
    journal.end_invocation(run, RunStatus.COMPLETED)

    assert waiting is not None
    assert waiting[2] is False
    assert journal.latest_run() == (run.run_id, "digest", True)
