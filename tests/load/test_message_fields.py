"""The message-field keys of a job file (cc, bcc, headers, envelope_from) and `suppress`: how
they load, and the structural header fields a job may not set."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import run_cli, write_job_file

from batchmail.load.job import load_job

JOB = """\
version: 1
from: "Bot <bot@example.com>"
subject: "Hello {{ name }}"
template:
  text: body.txt.j2
recipients:
  - email: alice@example.com
    name: Alice
smtp:
  host: 127.0.0.1
  security: none
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, extra: str) -> Path:
    return write_job_file(tmp_path, JOB + extra, {"body.txt.j2": "Hi {{ name }}\n"})


def test_the_keys_load_as_templates_in_the_order_given(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'cc: ["{{ name }} <a@example.com>", b@example.com]\n'
        "bcc: archive@example.com\n"
        "headers:\n  X-Campaign: 'spring-{{ name }}'\n  List-Id: 'Builds <b.example.com>'\n"
        "envelope_from: \"bounces+{{ email | replace('@', '=') }}@example.com\"\n"
        "suppress: [lists/unsub.txt]\n",
    )
    job = load_job(path, environ={})
    assert job.fields.cc == ("{{ name }} <a@example.com>", "b@example.com")
    assert job.fields.bcc == ("archive@example.com",)
    assert job.fields.headers == (
        ("X-Campaign", "spring-{{ name }}"),
        ("List-Id", "Builds <b.example.com>"),
    )
    assert job.fields.envelope_from == "bounces+{{ email | replace('@', '=') }}@example.com"
    assert job.suppress == (tmp_path / "lists/unsub.txt",)
    assert job.fields.where["headers.X-Campaign"] == "job.yaml:15"


def test_a_job_without_the_keys_has_none_of_them(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, ""), environ={})
    assert not job.fields.copies
    assert job.fields.headers == ()
    assert job.fields.envelope_from is None
    assert job.suppress == ()


@pytest.mark.parametrize("name", ["From", "bcc", "Message-ID", "Content-Type", "DKIM-Signature"])
def test_a_structural_header_is_a_job_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = write(tmp_path, f"headers:\n  X-Ok: fine\n  {name}: someone@example.com\n")
    result = run_cli(capsys, "validate", path)
    assert result.code == 2
    assert f"job.yaml:14: headers.{name}: headers: '{name}'" in result.err
    assert "Traceback" not in result.err


def test_a_header_name_with_a_colon_or_space_is_refused_by_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "headers:\n  'X Bad': v\n")
    result = run_cli(capsys, "validate", path)
    assert result.code == 2
    assert "X Bad" in result.err
