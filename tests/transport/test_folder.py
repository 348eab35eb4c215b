"""The folder transport: a dry run writes each message as an `.eml` file and finds it again."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from support import cli, make_job, parse, report_of


def dry_run_of(folder: Path, capsys: pytest.CaptureFixture[str], *people: dict[str, str]) -> Path:
    """`batchmail run JOB --dry-run --out OUT` for these recipients; the preview folder."""
    job = make_job(folder, recipients=[{"team": "core", **person} for person in people])
    out = folder / "out"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out)
    assert code == 0, err
    return out


def test_a_dry_run_finds_the_eml_of_a_recipient_at_an_idn_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run_of(tmp_path, capsys, {"email": "idn@bücher.example", "name": "Bob"})

    [eml] = out.glob("*.eml")
    assert eml.name == "000001-idn@bücher.example.eml"  # the address as people write it
    assert parse(eml.read_bytes())["To"].addresses[0].display_name == "Bob"
    assert f'href="{quote(eml.name)}"' in (out / "index.html").read_text(encoding="utf-8")
    report = report_of(out / "report.json")
    assert report["status"] == "completed"
    assert [r["status"] for r in report["recipients"]] == ["previewed"]
