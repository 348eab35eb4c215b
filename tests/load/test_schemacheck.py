"""The job file's schema check made in a forked process while the command line loads the rest:
its answer is the one load_job would find, and it is used only for the text and environment it
was made for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_job import VALID, write_job

from batchmail.errors import InvalidJobError, Problem
from batchmail.load.job import expect_schema_verdict, load_job
from batchmail.load.schema_check import EarlySchemaCheck

INVALID = VALID.replace("security: none", "security: plain\n  pasword_env: X")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # paths in messages relative to it, as the user sees them


def problem_lines(path: Path, ahead: EarlySchemaCheck | None = None) -> list[str]:
    if ahead is not None:
        expect_schema_verdict(ahead)
    with pytest.raises(InvalidJobError) as info:
        load_job(path, os.environ)
    return info.value.lines()


class Planted:
    """A verdict that finds one problem in any file: whether load_job took it shows."""

    def problems(self, path: Path, text: str, environ: object) -> list[Problem]:
        return [Problem(f"{path.name}:1", "planted", "version")]


def test_the_forked_check_finds_what_load_job_finds(tmp_path: Path) -> None:
    path = write_job(tmp_path, INVALID)
    check = EarlySchemaCheck(path)
    found = check.problems(path, path.read_text(), os.environ)
    assert found is not None  # answered by the forked process
    assert sorted((p.where, p.what) for p in found) == [
        ("job.yaml:11", "smtp.security"),
        ("job.yaml:12", "smtp.pasword_env"),
    ]
    lines = problem_lines(path, check)
    assert lines == problem_lines(path)
    assert "'plain' is not one of starttls, tls, none" in lines[0]
    assert "unknown key (did you mean 'password_env'?)" in lines[1]


def test_a_valid_job_loads_with_the_forked_checks_answer(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID)
    check = EarlySchemaCheck(path)
    assert check.problems(path, path.read_text(), os.environ) == []
    expect_schema_verdict(check)
    assert load_job(path, os.environ).smtp.security == "none"


def test_a_job_file_changed_since_the_check_is_checked_again(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID)
    check = EarlySchemaCheck(path)
    assert check.problems(path, path.read_text(), os.environ) == []
    path.write_text(INVALID)
    assert check.problems(path, INVALID, os.environ) is None
    assert len(problem_lines(path, check)) == 2


def test_another_environment_is_checked_again(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID.replace("127.0.0.1", "${SMTP_HOST}"))
    check = EarlySchemaCheck(path)
    other = {**os.environ, "SMTP_HOST": "127.0.0.1"}
    assert check.problems(path, path.read_text(), other) is None
    expect_schema_verdict(check)
    assert load_job(path, other).smtp.host == "127.0.0.1"


def test_a_check_that_could_not_answer_is_made_here(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    check = EarlySchemaCheck(path)  # nothing to read yet: the forked process answers nothing
    assert check.problems(path, "", os.environ) is None
    write_job(tmp_path, INVALID)
    assert len(problem_lines(path, check)) == 2


def test_load_job_takes_the_verdict_expected_once(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID)
    expect_schema_verdict(Planted())
    assert problem_lines(path) == ["job.yaml:1: version: planted"]
    assert load_job(path, os.environ).smtp.security == "none"  # checked here this time


def test_a_check_of_another_file_is_not_taken(tmp_path: Path) -> None:
    path = write_job(tmp_path, INVALID)
    other = write_job(tmp_path / "other", INVALID)
    check = EarlySchemaCheck(other)
    assert check.problems(path, path.read_text(), os.environ) is None
    lines = problem_lines(path, check)
    assert lines == problem_lines(path)
    assert all(line.startswith("job.yaml:") for line in lines)
