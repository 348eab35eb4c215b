#!/usr/bin/env python3
"""The step of batchmail's GitHub Action (action.yml at the repository's root): installs
batchmail, runs it on the job, and appends its outputs to the file named by $GITHUB_OUTPUT, in
the format the runner reads (`name=value`, or `name<<DELIMITER` ... `DELIMITER` for a value of
several lines). Exits with batchmail's exit code.

Its inputs come as environment variables, never spliced into a shell command line:
INPUT_JOB, INPUT_COMMAND (run | validate | check), INPUT_ARGS (split as a shell would, but
never run by one), INPUT_VERSION (empty: install from the action's own checkout; `none`: use
the batchmail already installed; else a version from the package index), INPUT_REPORT.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

COMMANDS = ("run", "validate", "check")
# The report's summary counts given as outputs (0 when no report was written).
COUNTS = ("total", "sent", "failed", "deferred", "unknown", "skipped", "suppressed")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!]*")
_SUMMARY_LINES = 50  # of batchmail's standard output, for the `summary` output


def main() -> int:
    outputs = {"exit-code": "2", "summary": "", **_counts(None)}
    code = _step(os.environ, outputs)
    outputs["exit-code"] = str(code)
    _write_outputs(os.environ.get("GITHUB_OUTPUT"), outputs)
    return code


def _step(env: Mapping[str, str], outputs: dict[str, str]) -> int:
    job = env.get("INPUT_JOB", "").strip()
    command = env.get("INPUT_COMMAND", "").strip() or "run"
    if not job or job.startswith("-"):
        return _fail(f"job {job!r}: give the job file's path")
    if command not in COMMANDS:
        return _fail(f"command {command!r} is not one of {', '.join(COMMANDS)}")
    try:
        args = shlex.split(env.get("INPUT_ARGS", ""))
    except ValueError as exc:
        return _fail(f"args: {exc}")
    if any(arg == "--report" or arg.startswith("--report=") for arg in args):
        return _fail("args: leave out --report; give the report input instead")
    version = env.get("INPUT_VERSION", "").strip()
    if version != "none":
        code = _install(version, Path(env.get("GITHUB_ACTION_PATH") or Path(__file__).parents[1]))
        if code:
            return code
    report = Path(env.get("INPUT_REPORT", "").strip() or "batchmail-report.json")
    argv = [sys.executable, "-m", "batchmail", command, job, *args]
    if command == "run":
        report.unlink(missing_ok=True)  # a report left by an earlier step is not this run's
        argv += ["--report", str(report)]
    code, shown = _run(argv, {**env, "PYTHONIOENCODING": "utf-8"})
    outputs["summary"] = "\n".join(shown)
    outputs.update(_counts(report if command == "run" else None))
    return code


def _install(version: str, checkout: Path) -> int:
    if version and not _VERSION.fullmatch(version):
        return _fail(f"version {version!r} is not a version number (or none, or empty)")
    target = f"batchmail=={version}" if version else str(checkout)
    print(f"installing {target}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    code = subprocess.run([*pip, target], check=False).returncode
    if code:
        print(f"::error title=batchmail action::installing {target} failed", flush=True)
    return code


def _run(argv: list[str], env: Mapping[str, str]) -> tuple[int, list[str]]:
    """Runs batchmail, its standard output shown as it comes; its last lines kept."""
    shown: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8", errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            shown.append(line.rstrip("\n"))
            del shown[:-_SUMMARY_LINES]
    return proc.returncode, shown


def _counts(report: Path | None) -> dict[str, str]:
    """The report's path and its summary counts; empty and zeros without a report."""
    summary: dict[str, int] = {}
    if report is not None and report.is_file():
        summary = json.loads(report.read_text(encoding="utf-8")).get("summary", {})
    found = {name: str(summary.get(name, 0)) for name in COUNTS}
    found["report"] = str(report) if summary else ""
    return found


def _write_outputs(path: str | None, outputs: dict[str, str]) -> None:
    if not path:
        print("GITHUB_OUTPUT is not set: outputs not written", file=sys.stderr)
        return
    with open(path, "a", encoding="utf-8") as out:
        for name, value in outputs.items():
            if "\n" in value or "\r" in value:
                # The runner reads up to a line that is the delimiter alone: one that cannot
                # occur in the value.
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{name}={value}\n")


def _fail(message: str) -> int:
    print(f"::error title=batchmail action::{message}", flush=True)
    return 2


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    sys.exit(main())
