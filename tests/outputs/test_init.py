"""`batchmail init`: the example job it writes validates and dry-runs as written, with no server
and no credentials; it never writes over a file."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from support import cli

from batchmail.outputs.starter import STARTER_FILES

WRITTEN = sorted(STARTER_FILES.values())


@pytest.fixture(autouse=True)
def _clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_init_writes_a_job_that_validates_and_dry_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "init", "myjob")
    assert (code, err) == (0, "")
    assert sorted(files_of(tmp_path / "myjob")) == WRITTEN
    assert [f"wrote myjob/{rel}" for rel in STARTER_FILES.values()] == out.splitlines()[:-1]
    job_text = (tmp_path / "myjob" / "job.yaml").read_text(encoding="utf-8")
    assert job_text.startswith("# yaml-language-server: $schema=")
    for step in ("batchmail validate", "batchmail run job.yaml --dry-run", "SMTP_HOST"):
        assert step in job_text
    assert ".batchmail/" in (tmp_path / "myjob" / ".gitignore").read_text().splitlines()

    code, out, err = cli(capsys, "validate", "myjob/job.yaml")
    assert (code, err) == (0, "")
    assert out == "myjob/job.yaml: valid: 3 messages\n"

    code, out, err = cli(capsys, "run", "myjob/job.yaml", "--dry-run")
    assert (code, err) == (0, "")
    previews = sorted((tmp_path / "myjob" / "preview").glob("*.eml"))
    assert len(previews) == 3
    first = BytesParser(policy=policy.default).parsebytes(previews[0].read_bytes())
    assert first["To"] == "Ada Lovelace <ada@example.com>"
    assert first["Subject"] == "See you at the spring meetup, Ada Lovelace"
    assert [p.get_content_type() for p in first.iter_parts()] == ["text/plain", "text/html"]
    report = json.loads((tmp_path / "myjob" / "preview" / "report.json").read_text())
    assert report["summary"]["total"] == 3


def test_init_defaults_to_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "init")
    assert (code, err) == (0, "")
    assert sorted(files_of(tmp_path)) == WRITTEN


def test_init_again_is_refused_in_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "init", "myjob")
    before = files_of(tmp_path / "myjob")
    code, out, err = cli(capsys, "init", "myjob")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["myjob/job.yaml: exists already: nothing was written"]
    assert files_of(tmp_path / "myjob") == before


@pytest.mark.parametrize("present", WRITTEN)
def test_init_into_a_folder_holding_one_of_its_files_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], present: str
) -> None:
    mine = tmp_path / "myjob" / present
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine\n")
    code, out, err = cli(capsys, "init", "myjob")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"myjob/{present}: exists already: nothing was written"]
    assert files_of(tmp_path / "myjob") == {present: b"mine\n"}
