"""batchmail as a library: validate or run a job, the same way for the CLI and the MCP server."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from batchmail.build.compose import (
    KEPT_BYTES,
    Composer,
    ShardValidation,
    Validation,
    merge,
    validate,
    validate_shard,
)
from batchmail.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    ConnectFailure,
    InvalidJobError,
    StateError,
    invalid,
)
from batchmail.load.job import SchemaVerdict, display_path, load_job
from batchmail.load.recipients import Warn
from batchmail.load.settings import Job
from batchmail.outputs.report import ReportHead, full_summary, recipient_entry, write_report
from batchmail.send.halt import Halt, HaltReason
from batchmail.send.pacing import QUOTA_SPAN, RateLimiter
from batchmail.send.processes import Go, ShardProcesses
from batchmail.send.runner import Event, Runner, choose_run
from batchmail.state.job_lock import job_lock
from batchmail.state.journal import Journal, journal_path
from batchmail.state.records import Run, report_status
from batchmail.state.states import UNDELIVERED, DeliveryState, RunStatus
from batchmail.transport.contract import Transport
from batchmail.transport.credentials import Credentials
from batchmail.transport.folder import FolderTransport, preview_name
from batchmail.transport.oauth2 import credentials_for
from batchmail.transport.smtp import SmtpTransport


def _ignore(_: object) -> None:
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
    on_event: Callable[[Event], None] = _ignore  # from this process and the sending ones
    on_share_sent: Callable[[], None] = lambda: None  # in a sending process, at its end
    on_start: Callable[[int, Job, str], None] = lambda to_send, job, run_id: None
    warn: Warn = _ignore
    expect_count: int | None = None  # refuse the job unless it has exactly this many recipients
    junit: Path | None = None
    failed_csv: Path | None = None
    step_summary: Path | None = None  # GitHub Actions' $GITHUB_STEP_SUMMARY
    processes: int | None = None  # sending processes; None: one per core when nothing paces
    expected_digest: str | None = None  # refuse unless the inputs are exactly these
    schema_verdict: SchemaVerdict | None = None  # the job file's schema, checked beforehand


class RunResult(Struct, frozen=True):
    job: str
    run_id: str
    status: RunStatus
    exit_code: int
    summary: dict[str, int]
    report: Path
    message: str | None  # why the run stopped early, if it did
    out: Path | None  # the dry run's previews


def validate_job(
    path: Path,
    warn: Warn = _ignore,
    expect_count: int | None = None,
    verdict: SchemaVerdict | None = None,
) -> tuple[Job, Validation]:
    """Load, render and build every message; raise InvalidJobError listing every problem."""
    job = load_job(path, verdict=verdict)
    validation = validate(Composer(job, warn))
    check_count(job, validation, expect_count)
    return job, validation


def check_count(job: Job, validation: Validation, expected: int | None) -> None:
    """The unattended-run guard: the job has exactly the number of recipients expected."""
    if expected is not None and validation.count != expected:
        raise invalid(
            display_path(job.path),
            f"{validation.count} recipients, but --expect-count says {expected}: nothing was sent",
        )


def run_job(path: Path, options: RunOptions) -> RunResult:
    """Validate everything, then send (or preview) what still needs sending, and report."""
    started = time.time()
    job = load_job(path, options.environ, options.schema_verdict)
    composer = Composer(job, options.warn, keep_bytes=KEPT_BYTES)
    with ExitStack() as stack:
        out: Path | None = None
        credentials: Credentials | None = None
        if options.dry_run:
            out = options.out or job.path.parent / "preview"
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batchmail-")))
            report = options.report or out / "report.json"
            transports: Callable[[], Transport] = lambda: FolderTransport(out)  # noqa: E731
        else:
            credentials = credentials_for(job.smtp, options.environ)
            state_dir = default_state_dir(job, options)
            report = options.report or default_report_path(job, options)
            transports = lambda: SmtpTransport(job.smtp, credentials)  # noqa: E731
        stack.enter_context(job_lock(state_dir, job.name))
        journal = Journal(journal_path(state_dir), job.name)
        stack.callback(journal.close)
        journal.fold_logs()  # what a killed run recorded last
        journal.clear_staging()

        def invocation(journal: Journal, run: Run) -> _Invocation:
            return _Invocation(options, job, composer, journal, run, report, started, out)

        team: ShardProcesses | None = None
        processes = options.processes or sending_processes(job)
        if processes > 1:
            work = _ShardWork(
                composer, journal.path, invocation, processes, transports, credentials
            )
            with journal.closed_for_fork():
                team = stack.enter_context(ShardProcesses(processes, work.validate, work.send))
        try:
            validation = _validated(composer, journal, team)
            check_count(job, validation, options.expect_count)
            check_digest(job, validation, options.expected_digest)
        except InvalidJobError as exc:
            journal.clear_staging()
            head = ReportHead(
                job.name,
                options.dry_run,
                started,
                time.time(),
                RunStatus.INVALID,
                errors=exc.lines(),
            )
            write_report(report, head, full_summary({}), [])
            raise
        try:
            run = choose_run(journal, job, validation, new_run=options.new_run or options.dry_run)
        except InvalidJobError:
            journal.clear_staging()
            raise
        if credentials is not None:
            credentials.prepare()  # after validation: an invalid job contacts nothing
        return invocation(journal, run).send(transports, team, credentials)
    raise AssertionError("unreachable")


def _validated(composer: Composer, journal: Journal, team: ShardProcesses | None) -> Validation:
    """The validation pass, here or in the forked processes (each its share)."""
    if team is None:
        with journal.staging() as stage:
            return validate(composer, stage)
    shards = team.validations()
    composer.source.adopt(shards[0].repeated_rows)  # for the CI outputs' second pass
    return merge(composer, shards)


def check_digest(job: Job, validation: Validation, expected: str | None) -> None:
    """For a caller that showed someone a preview: send only what was previewed."""
    if expected is not None and validation.digest != expected:
        raise invalid(
            display_path(job.path),
            "the job's inputs changed since they were previewed: nothing was sent",
        )


def default_report_path(job: Job, options: RunOptions) -> Path:
    return default_state_dir(job, options) / f"{job.name}.report.json"


def default_state_dir(job: Job, options: RunOptions) -> Path:
    chosen = options.state_dir or options.environ.get("BATCHMAIL_STATE_DIR")
    return Path(chosen) if chosen else job.path.parent / ".batchmail"


class _Invocation(Struct):
    """One run of a job after validation: the run chosen, and where things go."""

    options: RunOptions
    job: Job
    composer: Composer
    journal: Journal
    run: Run
    report: Path
    started: float
    out: Path | None

    def send(
        self,
        transports: Callable[[], Transport],
        team: ShardProcesses | None,
        credentials: Credentials | None,
    ) -> RunResult:
        job, journal, run = self.job, self.journal, self.run
        to_send = run.total - journal.summary(run).get(DeliveryState.SKIPPED, 0)
        self.options.on_start(to_send, job, run.run_id)
        if team is None:
            runner = self._runner(transports)
            halt, sent_now = runner.run(run), runner.sent_now
        else:
            shared = credentials.shared() if credentials is not None else None
            halt, sent_now = team.send(Go(run, shared), self.options.stop)
        self._fold_records(halt)
        if halt is not None and halt.reason in (HaltReason.QUOTA, HaltReason.CONNECTION):
            journal.defer_pending(run, halt.message)
        connect_failed = halt is not None and halt.reason == HaltReason.CONNECTION and not sent_now
        summary = full_summary(journal.summary(run))
        status = _status(halt, summary, connect_failed)
        journal.end_invocation(run, status)
        self._write_report(status, summary, halt)
        self._write_ci_outputs(status, summary)
        if self.out is not None:
            from batchmail.outputs.preview_page import write_index  # noqa: PLC0415 - email.parser and html: dry runs only

            write_index(self.out, job.name, self._previews())
        if halt is not None and halt.reason == HaltReason.ERROR and halt.error is not None:
            raise halt.error
        if connect_failed and halt is not None:
            raise ConnectFailure(f"{halt.message}; nothing was sent")
        return RunResult(
            job.name,
            run.run_id,
            status,
            _exit_code(halt, summary),
            summary,
            self.report,
            halt.message if halt else None,
            self.out,
        )

    def _fold_records(self, halt: Halt | None) -> None:
        """Fold the send loop's records into the journal. When sending stopped on an error (a
        full disk, say), folding may fail the same way: the first error is the one reported, and
        the records wait in their logs for the next run."""
        try:
            self.journal.fold_logs()
        except StateError:
            if halt is not None and halt.error is not None:
                raise halt.error from None
            raise

    def _runner(
        self,
        transports: Callable[[], Transport],
        shard: tuple[int, int] = (0, 1),
        connections: int = 0,
    ) -> Runner:
        job, stop, journal = self.job, self.options.stop, self.journal
        limiter = RateLimiter(
            job.rate.windows(),
            clock=time.time,
            sleep=stop.wait,
            batch_size=job.rate.batch_size,
            batch_pause=job.rate.batch_pause,
            history=_quota_history(journal, job),
        )
        return Runner(
            job,
            self.composer,
            journal,
            transports,
            limiter,
            time.time,
            stop,
            on_event=self.options.on_event,
            skip_unknown=self.options.skip_unknown,
            shard=shard,
            connections=connections,
        )

    def _previews(self) -> Iterator[Path]:
        """The dry run's .eml files in order, named from the journal, not by listing a folder
        that may hold a million of them."""
        assert self.out is not None
        for delivery in self.journal.deliveries(self.run):
            if delivery.state == DeliveryState.PREVIEWED:
                yield self.out / preview_name(delivery.seq, delivery.email)

    def _write_ci_outputs(self, status: RunStatus, summary: dict[str, int]) -> None:
        if not (self.options.junit or self.options.failed_csv or self.options.step_summary):
            return
        # Imported when asked for: the JUnit writer's XML quoting loads urllib.request.
        from batchmail.outputs.ci import (  # noqa: PLC0415
            append_step_summary,
            write_failed_csv,
            write_junit,
        )

        options, job, journal, run = self.options, self.job, self.journal, self.run
        if options.junit:
            write_junit(options.junit, job.name, summary, journal.deliveries(run))
        if options.failed_csv:
            recipients = self.composer.recipients([], second_pass=True)
            write_failed_csv(
                options.failed_csv, zip(recipients, journal.deliveries(run), strict=True)
            )
        if options.step_summary:
            undelivered = (d for d in journal.deliveries(run) if report_status(d) in UNDELIVERED)
            head = ReportHead(job.name, options.dry_run, self.started, time.time(), status)
            append_step_summary(options.step_summary, head, summary, undelivered, self.report)

    def _write_report(self, status: RunStatus, summary: dict[str, int], halt: Halt | None) -> None:
        head = ReportHead(
            self.job.name,
            self.options.dry_run,
            self.started,
            time.time(),
            status,
            self.run.run_id,
            halt.message if halt else None,
        )
        entries = (
            recipient_entry(d, self.composer.message_id(self.run.run_id, d.seq))
            for d in self.journal.deliveries(self.run)
        )
        write_report(self.report, head, summary, entries)


class _ShardWork(Struct):
    """What a forked process does with its share of the recipients: validate it, then, when
    the parent says so, send it. Created in the parent; each process runs its own copy."""

    composer: Composer
    journal_file: Path
    invocation: Callable[[Journal, Run], _Invocation]
    processes: int
    transports: Callable[[], Transport]
    credentials: Credentials | None
    # The processes' turns at writing the journal.
    write_lock: AbstractContextManager[Any] = field(
        default_factory=lambda: multiprocessing.get_context("fork").Lock()
    )
    journal: Journal | None = None

    def validate(self, shard: tuple[int, int]) -> ShardValidation:
        # An SQLite connection of its own: one must never cross a fork.
        job = self.composer.job
        self.journal = Journal(self.journal_file, job.name, write_lock=self.write_lock)
        with self.journal.staging() as stage:
            return validate_shard(self.composer, stage, shard)

    def send(self, shard: tuple[int, int], go: Go) -> tuple[Halt | None, int]:
        assert self.journal is not None
        if self.credentials is not None:
            self.credentials.adopt(go.credentials)
        invocation = self.invocation(self.journal, go.run)
        sessions = -(-self.composer.job.rate.connections // self.processes)
        runner = invocation._runner(self.transports, shard, sessions)
        try:
            halt = runner.run(go.run)
        finally:
            invocation.options.on_share_sent()
        if halt is None or halt.error is None:  # after an error, the parent or the next run
            # Here, while other processes may still send, rather than in the parent afterwards.
            self.journal.fold_own_log()
        return halt, runner.sent_now


def sending_processes(job: Job) -> int:
    """One process per core, up to one per connection, when nothing paces the job: a rate limit
    must hold across all sessions, which one process's send loop holds exactly."""
    if job.rate.paced:
        return 1
    return max(1, min(job.rate.connections, os.cpu_count() or 1))


def _quota_history(journal: Journal, job: Job) -> list[float]:
    quotas = [(limit, span) for limit, span in job.rate.windows() if span >= QUOTA_SPAN]
    if not quotas:
        return []
    longest = max(span for _, span in quotas)
    return journal.sent_times(time.time() - longest, max(limit for limit, _ in quotas))


# A run stopped by a halt ends with its status; one that lost its connection midway simply has
# recipients left.
_HALT_STATUS = {
    HaltReason.INTERRUPTED: RunStatus.INTERRUPTED,
    HaltReason.QUOTA: RunStatus.QUOTA,
    HaltReason.CONNECTION: RunStatus.INCOMPLETE,
    HaltReason.SENDER_REFUSED: RunStatus.SENDER_REFUSED,
    HaltReason.ERROR: RunStatus.ERROR,
}


def _status(halt: Halt | None, summary: dict[str, int], connect_failed: bool) -> RunStatus:
    if connect_failed:
        return RunStatus.CONNECTION_FAILED
    if halt is not None:
        return _HALT_STATUS[halt.reason]
    unfinished = sum(summary[state] for state in UNDELIVERED)
    return RunStatus.INCOMPLETE if unfinished else RunStatus.COMPLETED


_TO_FINISH = (DeliveryState.DEFERRED, DeliveryState.UNKNOWN, DeliveryState.PENDING)


def _exit_code(halt: Halt | None, summary: dict[str, int]) -> int:
    # Deferred work outranks permanent failures: a script that re-runs while the exit code is
    # 75 finishes the deferred recipients before it sees the failures.
    if halt is not None and halt.reason == HaltReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if halt is not None and halt.reason == HaltReason.SENDER_REFUSED:
        return EXIT_FAILED
    if any(summary[state] for state in _TO_FINISH):
        return EXIT_TEMPFAIL
    if summary[DeliveryState.FAILED]:
        return EXIT_FAILED
    return EXIT_OK
