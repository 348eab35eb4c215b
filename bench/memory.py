#!/usr/bin/env python3
"""Memory benchmark: batchmail's peak RSS as the recipient list grows.

For each size (default 10k, 100k, 1M recipients) generates the job, then measures under
/usr/bin/time -v:
  validate  `batchmail validate JOB`
  dry-run   `batchmail run JOB --dry-run --out DIR`   (previews are deleted afterwards)
  run       `batchmail run JOB --report R --state-dir S --new-run` against smtp-sink,
            which must receive exactly N messages
and prints peak RSS (largest process) and peak PSS of all batchmail's processes per size
and mode, each with its ratio to the 10k figure (or the smallest size measured), and the
wall times. Work directories are removed after each size unless --keep.

--data xlsx reads the recipients from an .xlsx workbook written as Excel writes one (shared
strings) instead of a CSV; --group-by K puts each address on K rows spread over the file and
groups them with `group_by: email`: a size is then a number of rows, K of them per message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import benchlib as bl
import gen_job

MODES = ("validate", "dry-run", "run")
SUFFIXES = {"k": 1_000, "m": 1_000_000}
PREVIEW_BYTES_PER_MESSAGE = 8 * 1024  # generous estimate for the disk check
MEMORY_DIR = bl.WORK_DIR / "memory"


@dataclass(frozen=True)
class Cell:
    """One (size, mode) measurement."""

    recipients: int
    mode: str
    result: bl.Measurement


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    factor = SUFFIXES.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in SUFFIXES else text
    value = int(float(digits) * factor)
    if value < 1:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M",
                        help="comma-separated recipient counts, k/M suffixes ok (10k,100k,1M)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated subset of {','.join(MODES)} (all)")
    parser.add_argument("--connections", type=int, default=4, metavar="C",
                        help="batchmail parallel SMTP sessions for `run` (4)")
    parser.add_argument("--skip-setup", action="store_true", help="do not run bench/setup.sh")
    parser.add_argument("--batchmail", type=Path, default=bl.DEFAULT_BATCHMAIL,
                        help="batchmail executable (the repo's .venv/bin/batchmail)")
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="seconds allowed per command (7200)")
    parser.add_argument("--keep", action="store_true", help="keep generated jobs and state")
    parser.add_argument("--data", choices=("csv", "xlsx"), default="csv",
                        help="the recipients file's kind (csv)")
    parser.add_argument("--group-by", type=int, default=0, metavar="K",
                        help="K rows per address, grouped with group_by: email (0: no grouping)")
    args = parser.parse_args(argv)
    args.batchmail = bl.resolve_executable(args.batchmail)
    try:
        args.sizes = sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()})
    except (ValueError, argparse.ArgumentTypeError) as err:
        parser.error(f"--sizes: {err}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.sizes or not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--sizes must be non-empty and --modes a subset of {','.join(MODES)}")
    return args


def label(count: int) -> str:
    for suffix, factor in (("M", 1_000_000), ("k", 1_000)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)


def check_disk(args: argparse.Namespace) -> None:
    if "dry-run" not in args.modes:
        return
    need = max(args.sizes) * PREVIEW_BYTES_PER_MESSAGE
    bl.WORK_DIR.mkdir(parents=True, exist_ok=True)
    stat = os.statvfs(bl.WORK_DIR)
    free = stat.f_bavail * stat.f_frsize
    if free < need:
        raise bl.BenchError(f"dry-run of {max(args.sizes)} recipients needs about "
                            f"{need / 1e9:.1f} GB free under bench/output, only {free / 1e9:.1f}")


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under root."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return files, total


def command(mode: str, batchmail: Path, jobdir: Path) -> list[str]:
    job = str(jobdir / "job.yaml")
    if mode == "validate":
        return [str(batchmail), "validate", job]
    if mode == "dry-run":
        return [str(batchmail), "run", job, "--dry-run", "--out", str(jobdir / "preview")]
    return [str(batchmail), "run", job, "--report", str(jobdir / "report.json"),
            "--state-dir", str(jobdir / "state"), "--new-run"]


def measure(mode: str, count: int, jobdir: Path, args: argparse.Namespace,
            sink: bl.Sink | None) -> bl.Measurement:
    """Run one mode; fail loudly on a non-zero exit or a wrong sink count."""
    before = sink.messages() if sink else 0
    if args.group_by:
        count //= args.group_by  # messages, of K rows each
    result = bl.timed_run(command(mode, args.batchmail, jobdir), jobdir,
                          jobdir / f"{mode}.log", args.timeout)
    received = sink.messages() - before if sink and mode == "run" else None
    if result.returncode != 0:
        got = "" if received is None else f", sink got {received} of {count}"
        raise bl.BenchError(f"batchmail {mode} at {count} recipients exited {result.returncode} "
                            f"after {result.wall_s:.1f} s{got}; log {result.log_file}:\n"
                            f"{result.log_tail()}")
    if mode == "run" and sink is not None:
        received = sink.wait_for(before + count) - before
        if received != count:
            raise bl.BenchError(f"run at {count} recipients: smtp-sink received {received} "
                                f"messages, expected exactly {count}")
    if mode == "dry-run":
        files, size = tree_size(jobdir / "preview")
        bl.log(f"  previews: {files} files, {size / 1e6:.1f} MB (deleting)")
        shutil.rmtree(jobdir / "preview", ignore_errors=True)
    return result


def clean_up(jobdir: Path, succeeded: bool) -> None:
    """All of it after success; after a failure only the bulky parts, keeping logs and state."""
    if succeeded:
        shutil.rmtree(jobdir, ignore_errors=True)
        return
    shutil.rmtree(jobdir / "preview", ignore_errors=True)
    for data in jobdir.glob("recipients.*"):
        data.unlink()
    bl.log(f"kept logs, report and state of the failed size in {jobdir}")


def measure_size(count: int, args: argparse.Namespace, port: int,
                 sink: bl.Sink | None) -> Iterator[Cell]:
    jobdir = MEMORY_DIR / label(count)
    shutil.rmtree(jobdir, ignore_errors=True)
    bl.log(f"generating job with {count:,} recipients")
    gen_job.generate(count, jobdir, port=port, connections=args.connections, mailmerge=False,
                     data=args.data, per_recipient=args.group_by)
    succeeded = False
    try:
        for mode in args.modes:
            bl.log(f"{label(count)}: batchmail {mode}")
            result = measure(mode, count, jobdir, args, sink)
            bl.log(f"  peak RSS {bl.mib(result.max_rss_kb)}, tree PSS "
                   f"{bl.mib(result.tree_pss_kb)}, {result.wall_s:.1f} s"
                   + (f", {count / result.wall_s:.0f} msg/s" if mode == "run" else ""))
            yield Cell(count, mode, result)
        succeeded = True
    finally:
        if not args.keep:
            clean_up(jobdir, succeeded)


def _metric_table(title: str, cells: list[Cell], args: argparse.Namespace,
                  value: Callable[[bl.Measurement], float], with_ratio: bool) -> None:
    base_size = 10_000 if 10_000 in args.sizes else args.sizes[0]
    table = {(c.recipients, c.mode): value(c.result) for c in cells}
    print(f"\n{title}" + (f"; ratio to the {label(base_size)} figure" if with_ratio else ""))
    rows = []
    for size in args.sizes:
        row = [f"{size:,}"]
        for mode in args.modes:
            figure, base = table.get((size, mode)), table.get((base_size, mode))
            if figure is None:
                row.append("-")
            elif with_ratio and base:
                row.append(f"{bl.mib(figure)} ({bl.ratio(figure, base)})")
            else:
                row.append(f"{figure:.1f}")
        rows.append(row)
    bl.print_table(["rows" if args.group_by else "recipients", *args.modes], rows)


def print_results(cells: list[Cell], args: argparse.Namespace) -> None:
    _metric_table("batchmail peak RSS, largest process (/usr/bin/time -v)", cells, args,
                  lambda m: m.max_rss_kb, with_ratio=True)
    _metric_table("batchmail peak PSS, all its processes (sampled every 0.1 s)", cells, args,
                  lambda m: m.tree_pss_kb, with_ratio=True)
    _metric_table("wall time (s)", cells, args, lambda m: m.wall_s, with_ratio=False)


def run(args: argparse.Namespace) -> int:
    if not args.skip_setup:
        bl.run_setup()
    bl.require_tools(need_mailmerge=False)
    problem = bl.batchmail_problem(args.batchmail)
    if problem:
        raise bl.BenchError(f"batchmail is not usable, nothing to measure: {problem}")
    check_disk(args)
    port = bl.free_port()
    cells: list[Cell] = []
    try:
        with ExitStack() as stack:
            sink = None
            if "run" in args.modes:
                sink = stack.enter_context(bl.smtp_sink(port, MEMORY_DIR))
                bl.log(f"smtp-sink listening on 127.0.0.1:{port} (pid {sink.proc.pid})")
            for count in args.sizes:
                cells.extend(measure_size(count, args, port, sink))
    finally:
        if not args.keep and not any(MEMORY_DIR.glob("*/*.log")):  # logs of a failure stay
            shutil.rmtree(MEMORY_DIR, ignore_errors=True)
    print_results(cells, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bl.run_main(run, parse_args(sys.argv[1:] if argv is None else argv), "commands")


if __name__ == "__main__":
    sys.exit(main())
