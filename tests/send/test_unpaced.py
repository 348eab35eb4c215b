"""A dry run and `validate` send nothing, so nothing paces them: `rate` is for real sends."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from support import make_job, report_of

from batchmail.api import RunOptions, dry_run

PACED = {"per_second": 5, "batch_size": 100, "batch_pause": 10, "connections": 2}


class NoWaiting(threading.Event):
    """A stop event whose every wait is noted: the pacing's sleep, and the batch pause."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_a_dry_run_never_waits_for_the_pace(tmp_path: Path) -> None:
    rate = {"per_second": 1, "batch_size": 2, "batch_pause": 3600}
    job = make_job(tmp_path, recipients=None, recipients_file="people.csv", rate=rate)
    _write_people(tmp_path / "people.csv", 5)
    stop = NoWaiting()
    result = dry_run(job, RunOptions(out=tmp_path / "out", stop=stop, processes=1))

    assert (result.exit_code, result.summary["previewed"]) == (0, 5)
    assert stop.waits == []


def test_a_dry_run_and_validate_of_10000_recipients_take_seconds_whatever_the_rate(
    tmp_path: Path,
) -> None:
    """Paced, this preview would take over half an hour (5 a second, 10 s every 100)."""
    job = make_job(
        tmp_path, recipients=None, recipients_file="people.csv", attachments=None, rate=PACED
    )
    _write_people(tmp_path / "people.csv", 10_000)
    began = time.monotonic()
    preview = _cli("run", job, "--dry-run", "--out", tmp_path / "out", "--quiet")
    assert preview.returncode == 0, preview.stderr
    report = report_of(tmp_path / "out" / "report.json")
    assert report["summary"]["previewed"] == 10_000
    assert sum(r["status"] == "previewed" for r in report["recipients"]) == 10_000
    checked = _cli("validate", job)
    assert checked.returncode == 0, checked.stderr
    assert "valid: 10000 messages" in checked.stdout
    assert time.monotonic() - began < 45


def _write_people(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "name", "team"])
        writer.writerows((f"user{i}@example.com", f"User {i}", "core") for i in range(count))


def _cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchmail", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
        check=False,
    )
