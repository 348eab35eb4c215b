"""A JSON Lines recipients file nested absurdly deep is refused with the file and line, as a
job file in YAML is, not with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import REPO, make_job

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_json_lines_recipient_is_refused_naming_its_line(tmp_path: Path) -> None:
    make_job(tmp_path, recipients=None, recipients_file="people.jsonl")
    people = f'{{"email": "b@example.com"}}\n{{"email": "a@example.com", "x": {DEEP}}}\n'
    (tmp_path / "people.jsonl").write_text(people, encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "batchmail", "validate", "job.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["people.jsonl:2: nested too deep to read: refused"]
