#!/usr/bin/env python3
"""Throughput benchmark: batchmail vs mailmerge 2.3.0 on the same job, against smtp-sink.

One command: runs bench/setup.sh, generates the job (bench/gen_job.py), starts smtp-sink
on a free 127.0.0.1 port, checks a small sample of both contenders' messages, then runs
each contender --runs times (interleaved) under /usr/bin/time -v and prints msg/s
median (min-max), peak RSS and the batchmail/mailmerge ratio of medians.

Every run must deliver exactly N messages to the sink, or the benchmark fails loudly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as bl
import gen_job
import samplecheck

SAMPLE_RECIPIENTS = 10  # includes one VIP (every 10th)


@dataclass
class Contender:
    """A mailer under test: how to build its command line for a run tag ("1", "sample")."""

    name: str
    cwd: Path
    argv: Callable[[str], list[str]]  # run tag -> argv
    runs: list[bl.Measurement] = field(default_factory=list)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000, metavar="N",
                        help="recipients (messages) per run (2000)")
    parser.add_argument("--runs", type=int, default=3, metavar="K", help="runs per contender (3)")
    parser.add_argument("--connections", type=int, default=4, metavar="C",
                        help="batchmail parallel SMTP sessions, rate.connections (4)")
    parser.add_argument("--skip-mailmerge", action="store_true", help="only run batchmail")
    parser.add_argument("--skip-batchmail", action="store_true", help="only run mailmerge")
    parser.add_argument("--skip-setup", action="store_true", help="do not run bench/setup.sh")
    parser.add_argument("--no-sample-check", action="store_true",
                        help="skip the message size/structure check on a few recipients")
    parser.add_argument("--batchmail", type=Path, default=bl.DEFAULT_BATCHMAIL,
                        help="batchmail executable (the repo's .venv/bin/batchmail)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per contender run (1800)")
    args = parser.parse_args(argv)
    args.batchmail = bl.resolve_executable(args.batchmail)
    if args.recipients < 1 or args.runs < 1 or args.connections < 1:
        parser.error("--recipients, --runs and --connections must be >= 1")
    if args.skip_mailmerge and args.skip_batchmail:
        parser.error("nothing to run: both contenders skipped")
    return args


# --------------------------------------------------------------------------- contenders


def mailmerge_contender(jobdir: Path) -> Contender:
    def argv(_tag: str) -> list[str]:
        return [
            str(bl.MAILMERGE_BIN), "--no-dry-run", "--no-limit",
            "--template", "mailmerge_template.txt",
            "--database", "mailmerge_database.csv",
            "--config", "mailmerge_server.conf",
            "--output-format", "text",
        ]

    return Contender("mailmerge", jobdir, argv)


def batchmail_contender(batchmail: Path, jobdir: Path, rundir: Path) -> Contender:
    def argv(tag: str) -> list[str]:
        state = rundir / f"batchmail-{tag}.state"
        shutil.rmtree(state, ignore_errors=True)
        return [
            str(batchmail), "run", str(jobdir / "job.yaml"),
            "--report", str(rundir / f"batchmail-{tag}.report.json"),
            "--state-dir", str(state), "--new-run",
        ]

    return Contender("batchmail", jobdir, argv)


def make_contenders(args: argparse.Namespace, jobdir: Path, rundir: Path,
                    with_batchmail: bool) -> list[Contender]:
    contenders = []
    if not args.skip_mailmerge:
        contenders.append(mailmerge_contender(jobdir))
    if with_batchmail:
        contenders.append(batchmail_contender(args.batchmail, jobdir, rundir))
    return contenders


# --------------------------------------------------------------------------- running


def run_checked(contender: Contender, tag: str, sink: bl.Sink, expected: int,
                rundir: Path, timeout: float) -> bl.Measurement:
    """One run; fail loudly unless it exits 0 and the sink counted exactly `expected` more."""
    before = sink.messages()
    result = bl.timed_run(contender.argv(tag), contender.cwd,
                          rundir / f"{contender.name}-{tag}.log", timeout)
    received = sink.wait_for(before + expected) - before
    if result.returncode != 0:
        raise bl.BenchError(
            f"{contender.name} run {tag} exited {result.returncode} after {result.wall_s:.1f} s, "
            f"sink got {received} of {expected}; log {result.log_file}:\n{result.log_tail()}"
        )
    if received != expected:
        raise bl.BenchError(
            f"{contender.name} run {tag}: smtp-sink received {received} messages, "
            f"expected exactly {expected}"
        )
    return result


def benchmark(contenders: list[Contender], args: argparse.Namespace, sink: bl.Sink,
              rundir: Path) -> None:
    """Interleave the contenders (order alternates per run) to spread machine noise."""
    for run in range(1, args.runs + 1):
        order = contenders if run % 2 else list(reversed(contenders))
        for contender in order:
            bl.log(f"run {run}/{args.runs}: {contender.name} ({args.recipients} messages)")
            result = run_checked(contender, str(run), sink, args.recipients, rundir, args.timeout)
            contender.runs.append(result)
            bl.log(f"  {args.recipients / result.wall_s:8.1f} msg/s  {result.wall_s:7.2f} s  "
                   f"peak RSS {bl.mib(result.max_rss_kb)}  tree PSS {bl.mib(result.tree_pss_kb)}  "
                   f"sink +{args.recipients} OK")
        check_batchmail_report(contenders, rundir, str(run), args.recipients)


def check_batchmail_report(contenders: list[Contender], rundir: Path, tag: str,
                           expected: int) -> None:
    """Cross-check batchmail's own report (a warning only: the sink count is what counts)."""
    if not any(c.name == "batchmail" for c in contenders):
        return
    report = rundir / f"batchmail-{tag}.report.json"
    try:
        sent = json.loads(report.read_text()).get("summary", {}).get("sent")
    except (OSError, ValueError, AttributeError) as err:
        bl.log(f"  warning: batchmail report {report.name} unreadable: {err}")
        return
    if sent != expected:
        bl.log(f"  warning: batchmail report {report.name} says sent={sent}, expected {expected}")


# --------------------------------------------------------------------------- sample check


def sample_check(args: argparse.Namespace, rundir: Path, with_batchmail: bool) -> None:
    """Send SAMPLE_RECIPIENTS messages per contender into a dumping sink and compare them."""
    sample_dir = bl.WORK_DIR / "sample"
    shutil.rmtree(sample_dir, ignore_errors=True)
    dump_dir = sample_dir / "dump"
    dump_dir.mkdir(parents=True)
    dump_dir.chmod(0o777)  # smtp-sink writes as user nobody when started by root
    port = bl.free_port()
    gen_job.generate(SAMPLE_RECIPIENTS, sample_dir, port=port)
    dump = dump_dir / "messages.dump"
    per_contender: dict[str, list[samplecheck.Captured]] = {}
    with bl.smtp_sink(port, sample_dir, dump, samplecheck.MARKER + r"\n") as sink:
        for contender in make_contenders(args, sample_dir, rundir, with_batchmail):
            done = len(samplecheck.parse_dump(dump)) if dump.exists() else 0
            run_checked(contender, "sample", sink, SAMPLE_RECIPIENTS, rundir, args.timeout)
            per_contender[contender.name] = samplecheck.parse_dump(dump)[done:]
    report_sample(per_contender, (sample_dir / gen_job.PDF_NAME).read_bytes())


def report_sample(per_contender: dict[str, list[samplecheck.Captured]], pdf: bytes) -> None:
    bl.log(f"sample check ({SAMPLE_RECIPIENTS} recipients each, captured by smtp-sink -D):")
    for name, messages in per_contender.items():
        sizes = sorted(m.wire_bytes for m in messages)
        first = messages[0]
        same_pdf = first.part_payload("attachment") == pdf
        bl.log(f"  {name}: {sizes[0]}-{sizes[-1]} bytes/message, "
               f"structure {first.structure()}, PDF {'identical' if same_pdf else 'DIFFERENT'}")
    names = list(per_contender)
    if len(names) == 2:
        by_rcpt = [{m.rcpt: m for m in per_contender[n]} for n in names]
        diffs = {d for rcpt, msg in by_rcpt[0].items() if rcpt in by_rcpt[1]
                 for d in samplecheck.text_differences(msg, by_rcpt[1][rcpt])}
        verdict = "same subject, text, HTML and PDF" if not diffs else \
            f"DIFFERENT: {', '.join(sorted(diffs))}"
        bl.log(f"  rendered content per recipient, {names[0]} vs {names[1]}: {verdict}")


# --------------------------------------------------------------------------- output


def _median_rate(contender: Contender, n: int) -> float:
    return bl.Spread.of([n / m.wall_s for m in contender.runs]).median


def _peak(contender: Contender, metric: str) -> int:
    return max(int(getattr(m, metric)) for m in contender.runs)


def print_results(contenders: list[Contender], args: argparse.Namespace, port: int) -> None:
    n = args.recipients
    print(f"\nResults: {n} recipients/run, {args.runs} runs each, "
          f"batchmail connections={args.connections}, smtp-sink 127.0.0.1:{port}")
    rows = []
    for c in contenders:
        rate = bl.Spread.of([n / m.wall_s for m in c.runs])
        wall = bl.Spread.of([m.wall_s for m in c.runs])
        rows.append([c.name, f"{rate.median:.1f} ({rate.low:.1f}-{rate.high:.1f})",
                     f"{wall.median:.2f}", bl.mib(_peak(c, "max_rss_kb")),
                     bl.mib(_peak(c, "tree_pss_kb")), f"{n} x{len(c.runs)} OK"])
    bl.print_table(["contender", "msg/s median (min-max)", "wall s (median)",
                    "peak RSS (max)", "tree PSS (max)", "sink count"], rows)
    by_name = {c.name: c for c in contenders}
    if {"batchmail", "mailmerge"} <= by_name.keys():
        bm, mm = by_name["batchmail"], by_name["mailmerge"]
        print(f"batchmail/mailmerge: msg/s {bl.ratio(_median_rate(bm, n), _median_rate(mm, n))}"
              f" (ratio of medians), peak RSS "
              f"{bl.ratio(_peak(bm, 'max_rss_kb'), _peak(mm, 'max_rss_kb'))}, tree PSS "
              f"{bl.ratio(_peak(bm, 'tree_pss_kb'), _peak(mm, 'tree_pss_kb'))}")
    print("peak RSS: largest single process (/usr/bin/time -v); tree PSS: sampled peak of the "
          "summed PSS of all the contender's processes")


# --------------------------------------------------------------------------- main


def preflight(args: argparse.Namespace) -> str | None:
    """Set up and check tools; return why batchmail cannot run (None if it can or is skipped)."""
    if not args.skip_setup:
        bl.run_setup()
    bl.require_tools(need_mailmerge=not args.skip_mailmerge)
    if args.skip_batchmail:
        return None
    problem = bl.batchmail_problem(args.batchmail)
    if problem:
        bl.log(f"batchmail is NOT usable, it will not be measured: {problem}")
        if args.skip_mailmerge:
            raise bl.BenchError(f"batchmail not usable and mailmerge skipped: {problem}")
    return problem


def run(args: argparse.Namespace) -> int:
    problem = preflight(args)
    jobdir = bl.WORK_DIR / "throughput"
    rundir = jobdir / "runs"
    shutil.rmtree(jobdir, ignore_errors=True)
    port = bl.free_port()
    gen_job.generate(args.recipients, jobdir, port=port, connections=args.connections)
    bl.log(f"generated job for {args.recipients} recipients in {jobdir.relative_to(bl.REPO_DIR)}")
    with_batchmail = problem is None and not args.skip_batchmail
    if not args.no_sample_check:
        sample_check(args, rundir, with_batchmail)
    contenders = make_contenders(args, jobdir, rundir, with_batchmail)
    with bl.smtp_sink(port, rundir) as sink:
        bl.log(f"smtp-sink listening on 127.0.0.1:{port} (pid {sink.proc.pid})")
        benchmark(contenders, args, sink, rundir)
    print_results(contenders, args, port)
    if problem:
        print(f"batchmail: NOT MEASURED ({problem})")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return bl.run_main(run, parse_args(sys.argv[1:] if argv is None else argv), "contenders")


if __name__ == "__main__":
    sys.exit(main())
