"""What a person or a CI log sees while a job runs: progress, failures, and the event log."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from batchmail.errors import StateError

if TYPE_CHECKING:
    from rich.progress import Progress
from batchmail.load.settings import Job
from batchmail.state.states import DELIVERED, TRIED, DeliveryState, RunStatus

_COUNTED = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.DEFERRED, DeliveryState.UNKNOWN)
_PLAIN_BATCH = 100  # a job without rate.batch_size reports every this many messages


class Display:
    """Counts events; shows failures and progress: a live bar on a terminal, else plain lines
    (one per batch and per failure, no control characters)."""

    def __init__(self, *, live: bool, quiet: bool, batch: int | None, log: Path | None):
        self.live = live and not quiet
        self.quiet = quiet
        self.batch = batch or _PLAIN_BATCH
        self.counts: Counter[str] = Counter()
        self.total = 0
        self._log: IO[str] | None = _open_log(log) if log else None
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, total: int, job: Job, run_id: str) -> None:
        self.total = total
        self.batch = job.rate.batch_size or self.batch
        self._log_line(
            {"event": "run_started", "job": job.name, "run_id": run_id, "to_send": total}
        )
        if self.live:
            from batchmail.outputs.live_bar import live_bar  # noqa: PLC0415 - rich loads slowly; terminals only

            self._bar = live_bar()
            self._task = self._bar.add_task(job.name, total=total, counts="")
            self._bar.start()

    def handle(self, record: dict[str, Any]) -> None:
        status = record["status"]
        self.counts[status] += 1
        self._log_line({"event": "delivery", **record})
        if status not in DELIVERED:
            self._say(
                f"{record['email']}: {status}: "
                f"{str(record['code']) + ' ' if record['code'] else ''}{record['response']}"
            )
        done = sum(self.counts[s] for s in TRIED)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, counts=self._counts_text())
        elif not self.quiet and done % self.batch == 0:
            print(
                f"batch {done // self.batch}: {done}/{self.total} {self._counts_text()}", flush=True
            )

    def finish(self, summary: dict[str, int], status: RunStatus) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._log_line({"event": "run_finished", "status": status, "summary": summary})
        if self._log is not None:
            self._log.close()
            self._log = None

    def _counts_text(self) -> str:
        return " ".join(
            f"{s}={self.counts[s]}" for s in _COUNTED if self.counts[s] or s == DeliveryState.SENT
        )

    def _say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def _log_line(self, record: dict[str, Any]) -> None:
        if self._log is None:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            self._log.write(json.dumps({"time": stamp, **record}, ensure_ascii=False) + "\n")
            self._log.flush()
        except OSError as exc:
            raise StateError(f"cannot write the log: {exc.strerror}") from None

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._log is not None:
            self._log.close()


def _open_log(path: Path) -> IO[str]:
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise StateError(f"cannot open the log {path}: {exc.strerror}") from None
