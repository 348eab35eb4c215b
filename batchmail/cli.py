"""The command line: `main(argv) -> int`, each BatchmailError printed as lines and an exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from . import __version__
from .compose import Composer, validate
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    BatchmailError,
    ConnectFailure,
    InvalidJobError,
)
from .job import Job, display_path, load_job, schema_text
from .journal import Journal, Run, job_lock, journal_path
from .ratelimit import QUOTA_SPAN, RateLimiter
from .report import ReportHead, full_summary, recipient_entry, summary_line, write_report
from .runner import Event, Halt, Runner, choose_run
from .transport import PreviewTransport, SmtpTransport, Transport, credentials_from_env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchmail", description="Declarative batch mailer.")
    parser.add_argument("--version", action="version", version=f"batchmail {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="validate, render everything, then send")
    run.add_argument("job", type=Path, metavar="JOB")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="write one .eml per recipient instead of sending (no connection)",
    )
    run.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where --dry-run writes (default: preview/ beside the job file)",
    )
    run.add_argument("--report", type=Path, metavar="FILE", help="the JSON report's path")
    run.add_argument(
        "--new-run",
        action="store_true",
        help="send again, even to recipients who already got this message",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the journal lives (default: $BATCHMAIL_STATE_DIR or .batchmail/ "
        "beside the job file)",
    )
    run.add_argument(
        "--on-unknown",
        choices=("resend", "skip"),
        default="resend",
        help="recipients whose delivery is unknown (no reply after the message "
        "was sent): resend with the same Message-ID (default), or skip them",
    )
    run.set_defaults(func=cmd_run)

    check = commands.add_parser("validate", help="validate and render everything; send nothing")
    check.add_argument("job", type=Path, metavar="JOB")
    check.set_defaults(func=cmd_validate)

    schema = commands.add_parser("schema", help="print the job JSON schema")
    schema.set_defaults(func=lambda args: print(schema_text(), end="") or EXIT_OK)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BatchmailError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    return code


def main_entry() -> None:
    sys.exit(main())


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    job = load_job(args.job)
    result = validate(Composer(job, warn))
    print(f"{display_path(job.path)}: valid: {result.count} messages")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    started = time.time()
    job = load_job(args.job)
    composer = Composer(job, warn)
    with ExitStack() as stack:
        if args.dry_run:
            out = args.out or job.path.parent / "preview"
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batchmail-")))
            report = args.report or out / "report.json"
            transports: Callable[[], Transport] = lambda: PreviewTransport(out)  # noqa: E731
        else:
            credentials = credentials_from_env(job.smtp, os.environ)
            state_dir = args.state_dir or Path(
                os.environ.get("BATCHMAIL_STATE_DIR") or job.path.parent / ".batchmail"
            )
            report = args.report or state_dir / f"{job.name}.report.json"
            transports = lambda: SmtpTransport(job.smtp, credentials)  # noqa: E731
        stack.enter_context(job_lock(state_dir, job.name))
        journal = Journal(journal_path(state_dir), job.name)
        stack.callback(journal.close)
        try:
            with journal.staging() as stage:
                validation = validate(composer, stage)
        except InvalidJobError as exc:
            write_report(
                report,
                ReportHead(
                    job.name, args.dry_run, started, time.time(), "invalid", errors=exc.lines()
                ),
                full_summary({}),
                [],
            )
            raise
        run = choose_run(journal, job, validation, new_run=args.new_run or args.dry_run)
        return _Invocation(args, job, composer, journal, run, transports, report, started).send()
    raise AssertionError("unreachable")


@dataclass
class _Invocation:
    """One `batchmail run` after validation: the run chosen, and where things go."""

    args: argparse.Namespace
    job: Job
    composer: Composer
    journal: Journal
    run: Run
    transports: Callable[[], Transport]
    report: Path
    started: float

    def send(self) -> int:
        job, journal, run = self.job, self.journal, self.run
        stop = threading.Event()
        limiter = RateLimiter(
            job.rate.windows(),
            clock=time.time,
            sleep=stop.wait,
            batch_size=job.rate.batch_size,
            batch_pause=job.rate.batch_pause,
            history=_quota_history(journal, job),
        )
        runner = Runner(
            job,
            self.composer,
            journal,
            self.transports,
            limiter,
            time.time,
            stop,
            on_event=_print_problem,
            skip_unknown=self.args.on_unknown == "skip",
        )
        with _signals_set(stop):
            halt = runner.run(run)
        if halt is not None and halt.reason in ("quota", "connection"):
            journal.defer_pending(run, halt.message)
        connect_failed = halt is not None and halt.reason == "connection" and not runner.sent_now
        summary = full_summary(journal.summary(run))
        status = _status(halt, summary, connect_failed)
        journal.end_invocation(run, status)
        self._write_report(status, summary, halt)
        if halt is not None and halt.reason == "error" and halt.error is not None:
            raise halt.error
        if connect_failed and halt is not None:
            raise ConnectFailure(f"{halt.message}; nothing was sent")
        if halt is not None:
            print(f"stopped: {halt.message}", file=sys.stderr)
        print(summary_line(job.name, summary, Path(display_path(self.report))))
        return _exit_code(halt, summary)

    def _write_report(self, status: str, summary: dict[str, int], halt: Halt | None) -> None:
        head = ReportHead(
            self.job.name,
            self.args.dry_run,
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


def _quota_history(journal: Journal, job: Job) -> list[float]:
    quotas = [(limit, span) for limit, span in job.rate.windows() if span >= QUOTA_SPAN]
    if not quotas:
        return []
    longest = max(span for _, span in quotas)
    return journal.sent_times(time.time() - longest, max(limit for limit, _ in quotas))


def _status(halt: Halt | None, summary: dict[str, int], connect_failed: bool) -> str:
    if connect_failed:
        return "connection_failed"
    if halt is not None:
        return halt.reason if halt.reason != "connection" else "incomplete"
    unfinished = summary["deferred"] + summary["unknown"] + summary["pending"] + summary["failed"]
    return "incomplete" if unfinished else "completed"


def _exit_code(halt: Halt | None, summary: dict[str, int]) -> int:
    # Deferred work outranks permanent failures: a script that re-runs while the exit code is
    # 75 finishes the deferred recipients before it sees the failures.
    if halt is not None and halt.reason == "interrupted":
        return EXIT_INTERRUPTED
    if halt is not None and halt.reason == "sender_refused":
        return EXIT_FAILED
    if summary["deferred"] or summary["unknown"] or summary["pending"]:
        return EXIT_TEMPFAIL
    if summary["failed"]:
        return EXIT_FAILED
    return EXIT_OK


def _print_problem(event: Event) -> None:
    outcome = event.outcome
    if outcome.state in ("sent", "previewed"):
        return
    code = f"{outcome.code} " if outcome.code else ""
    print(f"{event.recipient.email}: {outcome.state}: {code}{outcome.response}", file=sys.stderr)


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the message in progress, send no more. Second: leave now;
    the journal is consistent at any instant, since every state change is its own commit."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(EXIT_INTERRUPTED)
        stop.set()
        print(
            "interrupted: finishing the message in progress; again to quit at once", file=sys.stderr
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
