"""What a run is told (`RunOptions`) and what it gives back (`RunResult`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from msgspec import Struct, field

from batchmail.load.recipients import Warn
from batchmail.load.settings import Job
from batchmail.send.runner import Event
from batchmail.send.shard import Shard, chosen_shard
from batchmail.state.states import RunStatus
from batchmail.transport.contract import Transport


def ignore(_: object) -> None:
    return None


class RunOptions(Struct):
    dry_run: bool = False
    out: Path | None = None  # dry run: where previews go (default: preview/ beside the job)
    report: Path | None = None
    new_run: bool = False
    state_dir: Path | None = None
    skip_unknown: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stop: threading.Event = field(default_factory=threading.Event)  # set it to interrupt
    on_event: Callable[[Event], None] = ignore  # from this process and the sending ones
    on_start: Callable[[int, Job, str], None] = lambda to_send, job, run_id: None
    warn: Warn = ignore
    expect_count: int | None = None  # refuse the job unless it has exactly this many recipients
    strict: bool = False  # content warnings (an HTML body Gmail clips...) are errors
    junit: Path | None = None
    failed_csv: Path | None = None
    step_summary: Path | None = None  # GitHub Actions' $GITHUB_STEP_SUMMARY
    processes: int | None = None  # sending processes; None: one per core when nothing paces
    expected_digest: str | None = None  # refuse unless the inputs are exactly these
    # Instead of the job's SMTP server, and in this process: `lambda: MemoryTransport(outbox)`.
    transports: Callable[[], Transport] | None = None
    shard: str | None = None  # "K/N": send only shard K of N; "auto": from the CI's variables
    shard_count: int | None = None  # N, with "auto" from a Kubernetes Indexed Job

    def chosen_shard(self) -> Shard | None:
        """The shard this run sends, or None for the whole job (InvalidJobError if unclear)."""
        return chosen_shard(self.shard, self.shard_count, self.environ)


class RunResult(Struct, frozen=True):
    job: str
    run_id: str
    status: RunStatus
    exit_code: int
    summary: dict[str, int]
    report: Path
    message: str | None  # why the run stopped early, if it did
    out: Path | None  # the dry run's previews
    shard: Shard | None = None  # the shard sent, when the run sent one
