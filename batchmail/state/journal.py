"""The SQLite journal: every run and every recipient's state, recorded before and after sending.

A recipient's state is recorded before its transaction starts and right after the reply, so a
process killed at any instant leaves a journal that tells the truth: at most the message in
flight is `pending` although the server may have accepted it. The send loop's records go to a
per-process append-only log first (recordlog.py), which is folded into SQLite in batches: when
sending ends, every FOLD_EVERY records, and, for a log a killed process left, before a run is
chosen.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec

from batchmail.build.run_id import new_run_id
from batchmail.errors import StateError
from batchmail.state.database import Database
from batchmail.state.fold import (
    APPLY,
    APPLY_WITH_COPIES,
    BEGIN,
    COPIES,
    FINISH,
    changes_of,
    copy_records,
)
from batchmail.state.record_log import RecordLog, logs_with_prefix, read_records
from batchmail.state.records import Delivery, RefusedCopy, Run, Staged
from batchmail.state.states import DeliveryState, RunStatus

FOLD_EVERY = 1_000  # records a sending process appends before it folds them into SQLite
# States the send loop takes again (`unknown` too, unless told to skip it). `suppressed` too:
# the suppression files are read anew by every invocation, and a recipient no longer listed is
# sent to.
_RETRIED = (
    DeliveryState.PENDING,
    DeliveryState.FAILED,
    DeliveryState.DEFERRED,
    DeliveryState.SUPPRESSED,
)
# A run is finished once none of its recipients is in another state.
_FINAL = (DeliveryState.SENT, DeliveryState.SUPPRESSED)
# A stored state's member by a dictionary lookup: thirty times cheaper than calling the enum,
# for every row of a report of a million recipients.
_STATES = {state.value: state for state in DeliveryState}
_REFUSED = msgspec.json.Decoder(tuple[RefusedCopy, ...])


class Residue(Protocol):
    """Sequence numbers whose remainder modulo `count` is `index`."""

    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...


class Journal(Database):
    """One job's journal. Thread-safe: the sending threads share it."""

    def __init__(
        self,
        path: Path | str,
        job: str,
        clock: Any = time.time,
        write_lock: AbstractContextManager[Any] | None = None,
    ):
        """`write_lock`: see `Database`."""
        super().__init__(path, write_lock)
        self.job = job
        self.clock = clock
        self._log_lock = threading.Lock()
        self._log: RecordLog | None = None
        self._logs_dir = self.path.with_name(self.path.name + "-logs")
        # Per job: several jobs may share a state directory, each sending under its own lock.
        self._log_prefix = hashlib.sha256(job.encode()).hexdigest()[:16] + "-"

    # --- the validation pass stages every recipient; a new run takes them over ---

    def clear_staging(self) -> None:
        """Before a validation pass: what an earlier one of this job staged is stale."""
        with self._write() as db:
            db.execute("DELETE FROM staging WHERE job = ?", (self.job,))

    @contextmanager
    def staging(self, batch: int = 1000) -> Iterator[Callable[[Staged], None]]:
        """A callback that stages validated recipients, written in batches (by several
        processes at once, each validating a share of the recipients)."""
        rows: list[Staged] = []

        def flush() -> None:
            with self._write() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO staging VALUES (?, ?, ?, ?, ?)",
                    ((self.job, r.seq, r.email, r.size, _json(r.attachments)) for r in rows),
                )
            rows.clear()

        def add(row: Staged) -> None:
            rows.append(row)
            if len(rows) >= batch:
                flush()

        yield add
        flush()

    def latest_run(self) -> tuple[str, str, bool] | None:
        """(run_id, digest, finished) of this job's latest run."""
        rows = self._read(
            "SELECT run_id, digest, finished IS NOT NULL FROM runs WHERE job = ? "
            "ORDER BY started DESC, rowid DESC LIMIT 1",
            (self.job,),
        )
        return (rows[0][0], rows[0][1], bool(rows[0][2])) if rows else None

    def reached(self, run_id: str) -> int:
        rows = self._read(
            "SELECT count(*) FROM deliveries WHERE run_id = ? AND state = ?",
            (run_id, DeliveryState.SENT),
        )
        return int(rows[0][0])

    def start_run(self, digest: str, total: int) -> Run:
        now = self.clock()
        run_id = new_run_id(now)
        with self._write() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL)",
                (run_id, self.job, digest, total, now),
            )
            db.execute(
                "INSERT INTO deliveries (run_id, seq, email, state, size, attachments) "
                "SELECT ?, seq, email, ?, size, attachments FROM staging WHERE job = ?",
                (run_id, DeliveryState.PENDING, self.job),
            )
        self.clear_staging()
        return self._invoke(run_id, digest, total, resumed=False)

    def resume_run(self, run_id: str) -> Run:
        [(digest, total)] = self._read("SELECT digest, total FROM runs WHERE run_id = ?", (run_id,))
        self.clear_staging()
        return self._invoke(run_id, digest, total, resumed=True)

    def _invoke(self, run_id: str, digest: str, total: int, *, resumed: bool) -> Run:
        with self._write() as db:
            number = db.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM invocations WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO invocations VALUES (?, ?, ?, NULL, NULL)",
                (run_id, number, self.clock()),
            )
        return Run(run_id, digest, total, number, resumed)

    # --- the send loop ---

    def to_send(
        self, run: Run, after: int, limit: int, skip_unknown: bool, among: Residue | None = None
    ) -> list[int]:
        """Sequence numbers after `after` that still need sending, in order, at most `limit`;
        only those with `seq % among.count == among.index` when `among` is given."""
        states = _RETRIED + (() if skip_unknown else (DeliveryState.UNKNOWN,))
        marks = ",".join("?" * len(states))
        index, count = (among.index, among.count) if among is not None else (0, 1)
        rows = self._read(
            f"SELECT seq FROM deliveries WHERE run_id = ? AND seq > ? "  # noqa: S608
            f"AND state IN ({marks}) AND seq % ? = ? ORDER BY seq LIMIT ?",
            (run.run_id, after, *states, count, index, limit),
        )
        return [r[0] for r in rows]

    def begin(self, run: Run, seq: int) -> None:
        """Recorded before the SMTP transaction starts."""
        self._append([BEGIN, run.run_id, seq, run.invocation, self.clock()])

    def finish(
        self, run: Run, seq: int, state: str, code: int | None, response: str,
        *, refused: Sequence[RefusedCopy] = (),
    ) -> None:  # fmt: skip
        """Recorded right after the server's reply; `refused`: the copies it refused."""
        record = [FINISH, run.run_id, seq, run.invocation, self.clock(), state, code, response]
        self._append([*record, copy_records(refused)] if refused else record)

    def finish_copies(self, run: Run, seq: int, refused: Sequence[RefusedCopy]) -> None:
        """Recorded after a retry to a message's refused copies: those still refused."""
        self._append([COPIES, run.run_id, seq, run.invocation, self.clock(), copy_records(refused)])

    def waiting_copies(
        self, run: Run, among: Residue | None = None
    ) -> list[tuple[int, tuple[RefusedCopy, ...]]]:
        """The recipients whose message has copies waiting for a retry, with every copy the
        server refused; only those with `seq % among.count == among.index` when given."""
        index, count = (among.index, among.count) if among is not None else (0, 1)
        # INDEXED BY: without statistics SQLite would rather walk every row of the run by its
        # primary key than the index of the few with refused copies.
        rows = self._read(
            "SELECT seq, refused FROM deliveries INDEXED BY deliveries_refused WHERE run_id = ? "
            "AND refused IS NOT NULL AND waiting IS NOT NULL AND seq % ? = ? ORDER BY seq",
            (run.run_id, count, index),
        )
        return [(seq, _REFUSED.decode(refused)) for seq, refused in rows]

    def copies_waiting(self, run: Run) -> int:
        """How many copies of the run's messages wait for a retry."""
        rows = self._read(
            "SELECT coalesce(sum(waiting), 0) FROM deliveries INDEXED BY deliveries_refused "
            "WHERE run_id = ? AND refused IS NOT NULL",
            (run.run_id,),
        )
        return int(rows[0][0])

    def suppressed(self, run: Run, seq: int, why: str) -> None:
        """Recorded instead of a transaction: the recipient is in a suppression file."""
        self.finish(run, seq, DeliveryState.SUPPRESSED, None, why)

    def _append(self, record: list[Any]) -> None:
        with self._log_lock:
            if self._log is None:
                self._log = RecordLog(self._logs_dir, self._log_prefix)
            self._log.append(record)
            if len(self._log.records) >= FOLD_EVERY:
                self._fold_own_log()

    def fold_logs(self) -> None:
        """Fold every record log of this job into SQLite: this process's own, and those of
        sending processes that have ended or died. Only while no other process sends this job
        (its lock held, its sending processes gone)."""
        with self._log_lock:
            self._fold_own_log()
            for path in logs_with_prefix(self._logs_dir, self._log_prefix):
                self._fold(path)

    def fold_own_log(self) -> None:
        """Fold this process's records in: a sending process that has sent its share."""
        with self._log_lock:
            self._fold_own_log()

    def _fold_own_log(self) -> None:
        if self._log is not None:
            self._log.close()
            log, self._log = self._log, None
            self._fold(log.path, log.records)

    def _fold(self, path: Path, records: Iterable[list[Any]] | None = None) -> None:
        """Apply a log's records (read from its file unless given) in one transaction that also
        notes the log as folded, so that a crash before the file is deleted never applies it
        twice."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM folded_logs WHERE name = ?", (path.name,)).fetchone():
                read = read_records(path) if records is None else records
                plain, with_copies = changes_of(read, path)
                db.executemany(APPLY, plain)
                db.executemany(APPLY_WITH_COPIES, with_copies)
                db.execute("INSERT INTO folded_logs VALUES (?)", (path.name,))
        try:
            path.unlink()
        except OSError as exc:
            raise StateError(f"cannot delete the folded journal log {path}: {exc}") from None
        with self._write() as db:
            db.execute("DELETE FROM folded_logs WHERE name = ?", (path.name,))

    def defer_pending(self, run: Run, response: str) -> None:
        """Recipients not reached in this invocation (quota, breaker) are deferred, not lost."""
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, response = ?, invocation = ? "
                "WHERE run_id = ? AND state = ? AND attempts = 0",
                (
                    DeliveryState.DEFERRED,
                    response,
                    run.invocation,
                    run.run_id,
                    DeliveryState.PENDING,
                ),
            )

    def end_invocation(self, run: Run, status: RunStatus) -> None:
        now = self.clock()
        with self._write() as db:
            db.execute(
                "UPDATE invocations SET finished = ?, status = ? WHERE run_id = ? AND number = ?",
                (now, status, run.run_id, run.invocation),
            )
            db.execute(
                "UPDATE runs SET finished = ?1 WHERE run_id = ?2 AND NOT EXISTS (SELECT 1 "
                "FROM deliveries WHERE run_id = ?2 AND (state NOT IN (?3, ?4) OR (refused "
                "IS NOT NULL AND waiting IS NOT NULL)))",
                (now, run.run_id, *_FINAL),
            )

    def sent_times(self, since: float, limit: int) -> list[float]:
        """When this job's latest messages went, across runs: quotas hold across invocations."""
        rows = self._read(
            "SELECT d.sent_at FROM deliveries d JOIN runs r USING (run_id) "
            "WHERE r.job = ? AND d.sent_at > ? ORDER BY d.sent_at DESC LIMIT ?",
            (self.job, since, limit),
        )
        return [r[0] for r in rows]

    # --- reporting ---

    def deliveries(self, run: Run) -> Iterator[Delivery]:
        """Every recipient of the run in order, streamed from the database (for reports, once
        no thread of this process sends any more)."""
        cursor = self.db.execute(
            "SELECT seq, email, state, code, response, attempts, size, attachments, invocation, "
            "refused FROM deliveries WHERE run_id = ? ORDER BY seq",
            (run.run_id,),
        )
        for seq, email, state, code, response, attempts, size, names, invocation, refused in cursor:
            yield Delivery(
                seq,
                email,
                _STATES[state],
                code,
                response,
                attempts,
                size,
                msgspec.json.decode(names or "[]"),
                invocation == run.invocation,
                _REFUSED.decode(refused) if refused is not None else (),
            )

    def summary(self, run: Run) -> dict[str, int]:
        """Counts per report status, in one query."""
        rows = self._read(
            "SELECT CASE WHEN state = ?1 AND invocation IS NOT ?2 THEN ?3 "
            "ELSE state END, count(*) FROM deliveries WHERE run_id = ?4 GROUP BY 1",
            (DeliveryState.SENT, run.invocation, DeliveryState.SKIPPED, run.run_id),
        )
        return dict(rows)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def journal_path(state_dir: Path) -> Path:
    return state_dir / "journal.sqlite3"
