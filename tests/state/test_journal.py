"""The journal's record logs: what a killed process appended is folded in exactly once."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from batchmail.errors import StateError
from batchmail.state.journal import FOLD_EVERY, Journal, journal_path
from batchmail.state.records import Run, Staged


def started_run(state: Path, job: str = "job", count: int = 3) -> tuple[Journal, Run]:
    journal = Journal(journal_path(state), job)
    with journal.staging() as stage:
        for seq in range(1, count + 1):
            stage(Staged(seq, f"user{seq}@example.com", 100, []))
    return journal, journal.start_run("digest", count)


def states(state: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(journal_path(state)) as db:
        return db.execute("SELECT seq, state, attempts FROM deliveries ORDER BY seq").fetchall()


def logs(state: Path) -> list[Path]:
    return sorted((state / "journal.sqlite3-logs").glob("*.log"))


def test_records_reach_sqlite_when_folded_and_their_log_is_deleted(tmp_path: Path) -> None:
    journal, run = started_run(tmp_path)
    journal.begin(run, 1)
    journal.finish(run, 1, "sent", 250, "2.0.0 queued")
    journal.begin(run, 2)
    assert states(tmp_path) == [(1, "pending", 0), (2, "pending", 0), (3, "pending", 0)]
    assert len(logs(tmp_path)) == 1

    journal.fold_logs()

    assert states(tmp_path) == [(1, "sent", 1), (2, "pending", 1), (3, "pending", 0)]
    assert logs(tmp_path) == []


def rows(state: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(journal_path(state)) as db:
        return db.execute(
            "SELECT seq, state, attempts, code, response, invocation, updated, sent_at "
            "FROM deliveries ORDER BY seq"
        ).fetchall()


def test_a_logs_records_fold_to_what_applying_them_one_by_one_gives(tmp_path: Path) -> None:
    """A recipient's records are applied as one change: retries, a reply kept by a later
    begin, a send that never got its reply. Folding after every record is the reference."""
    results = []
    for fold_every_record, state in ((True, tmp_path / "one"), (False, tmp_path / "all")):
        state.mkdir()
        journal, run = started_run(state, count=4)
        times = itertools.count(1000.0)
        journal.clock = lambda times=times: next(times)
        fold = journal.fold_logs if fold_every_record else (lambda: None)
        for seq, calls in (
            (
                1,
                [
                    ("begin",),
                    ("finish", "deferred", 451, "4.7.1 later"),
                    ("begin",),
                    ("finish", "sent", 250, "2.0.0 ok"),
                ],
            ),
            (2, [("begin",), ("finish", "deferred", 421, "4.3.2 busy"), ("begin",)]),
            (3, [("begin",), ("finish", "failed", 550, "5.1.1 no such user")]),
        ):
            for call in calls:
                if call[0] == "begin":
                    journal.begin(run, seq)
                else:
                    journal.finish(run, seq, *call[1:])  # type: ignore[arg-type]
                fold()
        journal.fold_logs()
        results.append(rows(state))
    assert results[0] == results[1]
    assert [row[:5] for row in results[1]] == [
        (1, "sent", 2, 250, "2.0.0 ok"),
        (2, "pending", 2, 421, "4.3.2 busy"),
        (3, "failed", 1, 550, "5.1.1 no such user"),
        (4, "pending", 0, None, None),
    ]
    sent_at = results[1][0][7]
    assert sent_at is not None
    assert sent_at == results[1][0][6]
    assert results[1][1][7] is None


def test_a_killed_processs_log_is_folded_once_by_the_next_journal(tmp_path: Path) -> None:
    journal, run = started_run(tmp_path)
    journal.begin(run, 1)
    journal.finish(run, 1, "sent", 250, "ok")
    journal.begin(run, 2)
    [log] = logs(tmp_path)
    with log.open("ab") as torn:  # the last write, cut short by a power loss
        torn.write(b'["finish","sent",250,"ok"')

    later = Journal(journal_path(tmp_path), "job")
    later.fold_logs()
    later.fold_logs()

    assert states(tmp_path) == [(1, "sent", 1), (2, "pending", 1), (3, "pending", 0)]
    assert logs(tmp_path) == []


def test_a_log_noted_as_folded_is_not_applied_again(tmp_path: Path) -> None:
    """A crash between the fold's commit and the file's deletion leaves both behind."""
    journal, run = started_run(tmp_path)
    journal.begin(run, 1)
    [log] = logs(tmp_path)
    with sqlite3.connect(journal_path(tmp_path)) as db:
        db.execute("UPDATE deliveries SET attempts = 1 WHERE seq = 1")
        db.execute("INSERT INTO folded_logs VALUES (?)", (log.name,))

    Journal(journal_path(tmp_path), "job").fold_logs()

    assert states(tmp_path)[0] == (1, "pending", 1)
    assert logs(tmp_path) == []


def test_each_job_folds_only_its_own_logs(tmp_path: Path) -> None:
    """Jobs sharing a state directory send at the same time, each under its own lock."""
    first, first_run = started_run(tmp_path, "first")
    first.begin(first_run, 1)
    other = Journal(journal_path(tmp_path), "other")

    other.fold_logs()

    assert len(logs(tmp_path)) == 1
    assert states(tmp_path)[0] == (1, "pending", 0)


def test_a_damaged_log_is_an_error_naming_it(tmp_path: Path) -> None:
    journal, run = started_run(tmp_path)
    journal.begin(run, 1)
    [log] = logs(tmp_path)
    with log.open("ab") as damaged:
        damaged.write(b"not json\n")

    later = Journal(journal_path(tmp_path), "job")
    with pytest.raises(StateError, match=r"journal log .*\.log is damaged at line 2"):
        later.fold_logs()
    assert states(tmp_path)[0] == (1, "pending", 0)  # nothing of it applied
    assert later.reached(run.run_id) == 0  # and the journal is still usable


def test_reads_never_fail_while_another_thread_writes_and_another_connection_commits(
    tmp_path: Path,
) -> None:
    """One thread reads what is left to send, one record at a time, while another thread of the
    same journal folds records in and another connection (another sending process's) commits
    all along: nothing fails (this once ended in SQLITE_BUSY_SNAPSHOT, exit 74)."""
    count = 3 * FOLD_EVERY
    journal, run = started_run(tmp_path, count=count)
    other = Journal(journal_path(tmp_path), "job")
    failures: list[BaseException] = []
    done = threading.Event()

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                work()
            except BaseException as exc:
                failures.append(exc)

        return body

    def read() -> None:
        after = 0
        while not done.is_set():
            seqs = journal.to_send(run, after, 1, False)
            after = seqs[0] if seqs else 0

    def write() -> None:
        for seq in range(1, count + 1, 2):  # folded every FOLD_EVERY records
            journal.begin(run, seq)
            journal.finish(run, seq, "sent", 250, "ok")

    def commit() -> None:
        for seq in range(2, count + 1, 2):
            other.begin(run, seq)
            other.finish(run, seq, "sent", 250, "ok")
            other.fold_own_log()

    threads = [threading.Thread(target=guarded(work)) for work in (read, write, commit)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    done.set()
    threads[0].join()
    journal.fold_logs()

    assert failures == []
    assert journal.to_send(run, 0, count, False) == []
