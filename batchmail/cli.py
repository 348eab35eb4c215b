"""The command line: `main(argv) -> int`, each BatchmailError printed as lines and an exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from batchmail import __version__
from batchmail.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, BatchmailError
from batchmail.load.job import display_path
from batchmail.load.schema import schema_text
from batchmail.load.schema_check import start_schema_check
from batchmail.outputs.progress import Display

# run and validate import what renders and sends (api and the modules it loads) only after
# starting the job file's schema check in another process, which then runs meanwhile.

_STRICT_HELP = "content warnings (HTML Gmail clips, images without alt...) are errors: exit 2"


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
        "--expect-count",
        type=int,
        metavar="N",
        help="refuse the job (exit 2, nothing sent) unless it has N recipients",
    )
    run.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write JUnit XML: one testcase per recipient",
    )
    run.add_argument(
        "--failed-csv",
        type=Path,
        metavar="FILE",
        help="also write the recipients not delivered, with a reason column",
    )
    run.add_argument("--log", type=Path, metavar="FILE", help="append one JSON line per event")
    run.add_argument("--strict", action="store_true", help=_STRICT_HELP)
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display; failures and the summary only",
    )
    run.add_argument(
        "--on-unknown",
        choices=("resend", "skip"),
        default="resend",
        help="recipients whose delivery is unknown (no reply after the message "
        "was sent): resend with the same Message-ID (default), or skip them",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="send only shard K of N: the recipients K, K+N, K+2N... at 1/N of every rate "
        "limit; auto: from CI_NODE_INDEX/CI_NODE_TOTAL or JOB_COMPLETION_INDEX",
    )
    run.add_argument(
        "--shard-count",
        type=int,
        metavar="N",
        help="with --shard auto and JOB_COMPLETION_INDEX: how many shards there are",
    )
    run.set_defaults(func=cmd_run)

    check = commands.add_parser("validate", help="validate and render everything; send nothing")
    check.add_argument("job", type=Path, metavar="JOB")
    check.add_argument(
        "--expect-count",
        type=int,
        metavar="N",
        help="also fail unless the job has exactly N recipients",
    )
    check.add_argument("--strict", action="store_true", help=_STRICT_HELP)
    check.set_defaults(func=cmd_validate)

    probe = commands.add_parser(
        "check",
        help="validate, connect as a run would (TLS, login, extensions), check SPF, DMARC and "
        "DKIM in DNS; send nothing",
        description="Validate the job, connect to its SMTP server as a run would, check the "
        "connection, TLS, login and the server's extensions against the job, and QUIT before "
        "any message; then look up the From domain's SPF and DMARC records and the DKIM key "
        "published for the job's selector. Exit 0: nothing failed; 3: connection, TLS or login "
        "failed; 1: another check failed; 2: the job is invalid.",
    )
    probe.add_argument("job", type=Path, metavar="JOB")
    probe.add_argument(
        "--dns",
        metavar="HOST[:PORT]",
        help="the DNS resolver to ask, an IP address (default: the system's; port 53)",
    )
    probe.add_argument("--json", action="store_true", help="print the checks as a JSON list")
    probe.set_defaults(func=cmd_check)

    bounces = commands.add_parser(
        "bounces",
        help="read bounces and abuse reports; suppress the recipients they name",
    )
    bounces.add_argument(
        "source",
        metavar="SOURCE",
        help="a Maildir folder, an mbox file, or imaps://USER@HOST:PORT/FOLDER",
    )
    bounces.add_argument("--job", type=Path, required=True, metavar="JOB")
    bounces.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the job's journal lives (default: as for run)",
    )
    bounces.add_argument(
        "--password-env",
        metavar="NAME",
        help="the environment variable holding the IMAP password",
    )
    bounces.set_defaults(func=cmd_bounces)

    merge = commands.add_parser(
        "merge",
        help="one report (and CI outputs) from the reports of a job's shards",
        description="Check that the reports are those of every shard of one job, each "
        "recipient in exactly one, then write the job's report. Exit code as run's would be.",
    )
    merge.add_argument("reports", type=Path, nargs="+", metavar="REPORT")
    merge.add_argument(
        "--report", type=Path, required=True, metavar="FILE", help="the merged report"
    )
    merge.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    merge.add_argument(
        "--failed-csv", type=Path, metavar="FILE", help="also write the recipients not delivered"
    )
    merge.set_defaults(func=cmd_merge)

    init = commands.add_parser("init", help="write a runnable example job into DIR")
    init.add_argument("folder", type=Path, nargs="?", default=Path(), metavar="DIR")
    init.set_defaults(func=cmd_init)

    mcp = commands.add_parser("mcp", help="serve batchmail to LLM agents over MCP (stdio)")
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve over Streamable HTTP at http://HOST:PORT/mcp instead of stdio; every "
        "request needs Authorization: Bearer $BATCHMAIL_MCP_TOKEN",
    )
    mcp.set_defaults(func=cmd_mcp)

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
    start_schema_check(args.job)
    from batchmail.api import validate_job  # noqa: PLC0415 - see the imports

    job, result = validate_job(args.job, warn, args.expect_count, args.strict)
    suppressed = f", {result.suppressed} of them suppressed" if result.suppressed else ""
    filtered = f" ({result.filtered} rows filtered out by where)" if result.filtered else ""
    print(f"{display_path(job.path)}: valid: {result.count} messages{suppressed}{filtered}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    start_schema_check(args.job)
    from batchmail.api import check_job  # noqa: PLC0415 - see the imports
    from batchmail.outputs.checks import check_json, check_lines  # noqa: PLC0415
    from batchmail.transport.probe import exit_code  # noqa: PLC0415

    checks = check_job(args.job, os.environ, warn, args.dns)
    print(check_json(checks) if args.json else check_lines(checks), end="")
    return exit_code(checks)


def cmd_bounces(args: argparse.Namespace) -> int:
    from batchmail.api import BounceOptions, bounces  # noqa: PLC0415 - see the imports

    options = BounceOptions(
        state_dir=args.state_dir,
        password_env=args.password_env,
        on_line=lambda line: print(line, flush=True),
    )
    summary = bounces(args.job, args.source, options)
    print(summary.line())
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from batchmail.api import merge_reports  # noqa: PLC0415 - see the imports
    from batchmail.outputs.report import summary_line  # noqa: PLC0415

    merged = merge_reports(args.reports, args.report, args.junit, args.failed_csv)
    if merged.message:
        print(f"stopped: {merged.message}", file=sys.stderr)
    print(summary_line(merged.job, merged.summary, Path(display_path(merged.report.absolute()))))
    return merged.exit_code


def cmd_init(args: argparse.Namespace) -> int:
    from batchmail.api import init_job  # noqa: PLC0415 - see the imports

    written = init_job(args.folder)
    for path in written:
        print(f"wrote {display_path(path.absolute())}")
    job = display_path((args.folder / "job.yaml").absolute())
    print(f"next: edit it, then batchmail validate {job} and batchmail run {job} --dry-run")
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from batchmail.agents.mcp_server import serve  # noqa: PLC0415 - the mcp extra is optional
    except ImportError:
        print("batchmail mcp needs the mcp extra: pip install 'batchmail[mcp]'", file=sys.stderr)
        return EXIT_INVALID
    return serve(args.http)


def cmd_run(args: argparse.Namespace) -> int:
    start_schema_check(args.job)
    from batchmail.api import RunOptions, run_job  # noqa: PLC0415 - see the imports
    from batchmail.outputs.report import summary_line  # noqa: PLC0415
    from batchmail.send.events import EventPipe  # noqa: PLC0415

    live = sys.stdout.isatty() and sys.stderr.isatty()
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    with Display(live=live, quiet=args.quiet, batch=None, log=args.log) as display:
        with EventPipe(display.handle) as events:
            options = RunOptions(
                dry_run=args.dry_run,
                out=args.out,
                report=args.report,
                new_run=args.new_run,
                state_dir=args.state_dir,
                skip_unknown=args.on_unknown == "skip",
                on_event=events.emit,
                on_start=display.start,
                warn=warn,
                expect_count=args.expect_count,
                strict=args.strict,
                junit=args.junit,
                failed_csv=args.failed_csv,
                step_summary=Path(summary_file) if summary_file else None,
                shard=args.shard,
                shard_count=args.shard_count,
            )
            with _signals_set(options.stop):
                result = run_job(args.job, options)
        display.finish(result.summary, result.status)
    if result.message:
        print(f"stopped: {result.message}", file=sys.stderr)
    note = result.shard.note if result.shard else None
    print(summary_line(result.job, result.summary, Path(display_path(result.report)), note))
    return result.exit_code


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the message in progress, send no more. Second: leave now;
    the journal is consistent at any instant, since every state change is written at once."""

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
