"""Where CI pipelines use batchmail: JUnit, a CSV of who was not reached, the step summary,
plain output, the event log and the guards for unattended runs."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from smtpserver import Script, SmtpServerFactory
from support import PASSWORD, Result, make_job, recipients, report_of, run_cli

ANSI = re.compile(r"\x1b\[|\x1b\]|[\x00-\x08\x0b-\x1f\x7f]")
REFUSED = "550 5.1.1 No such user"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_STEP_SUMMARY", "BATCHMAIL_STATE_DIR", "SMTP_USERNAME", "SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("connections", [1, 2])  # 2: validated and sent by two processes
def test_junit_failed_csv_and_step_summary(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    connections: int,
) -> None:
    script = Script(rcpt_replies={"user2@example.com": [REFUSED], "user5@example.com": [REFUSED]})
    server = smtp_server(script=script)
    people = [{**r, "amount": i, "tags": ["a", "b"]} for i, r in enumerate(recipients(6))]
    job = make_job(tmp_path, server.port, recipients=people, rate={"connections": connections})
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run_cli(
        capsys,
        "run",
        job,
        "--junit",
        tmp_path / "junit.xml",
        "--failed-csv",
        tmp_path / "failed.csv",
    )
    assert result.code == 1

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("6", "2")
    failures = {
        case.get("name"): case.find("failure")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert set(failures) == {"user2@example.com", "user5@example.com"}
    failure = failures["user2@example.com"]
    assert failure is not None
    assert (failure.get("type"), failure.get("message")) == ("550", REFUSED)

    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as GitHub expects
    assert "| sent | 4 |" in text
    assert "| failed | 2 |" in text
    assert "| total | 6 |" in text
    assert "user5@example.com | failed | 550 5.1.1 No such user" in text

    script.rcpt_replies.clear()
    again = tmp_path / "again"
    again.mkdir()
    (again / "people.csv").write_bytes((tmp_path / "failed.csv").read_bytes())
    rerun = make_job(again, server.port, recipients=None, recipients_file="people.csv")
    before = len(server.messages)
    assert run_cli(capsys, "run", rerun).code == 0
    assert [m.rcpt_tos[0] for m in server.messages[before:]] == [
        "user2@example.com",
        "user5@example.com",
    ]
    rows = (tmp_path / "failed.csv").read_text().splitlines()
    assert rows[0] == "email,name,team,amount,tags,reason"
    assert (
        rows[1] == 'user2@example.com,User 2,core,1,"[""a"", ""b""]",failed: 550 5.1.1 No such user'
    )


def test_output_off_a_terminal_is_plain_lines(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server(script=Script(rcpt_replies={"user3@example.com": [REFUSED]}))
    job = make_job(tmp_path, server.port, recipients=recipients(7), rate={"batch_size": 2})
    done = subprocess.run(
        [sys.executable, "-m", "batchmail", "run", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert not ANSI.search(done.stdout.replace("\n", "")), done.stdout
    assert not ANSI.search(done.stderr.replace("\n", "")), done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "batch 1: 2/7 sent=2",
        "batch 2: 4/7 sent=3 failed=1",
        "batch 3: 6/7 sent=5 failed=1",
    ]
    assert lines[-1].startswith("job: 7 recipients: 6 sent, 1 failed")
    assert done.stderr.splitlines() == ["user3@example.com: failed: 550 5.1.1 No such user"]


def test_a_terminal_gets_a_live_progress_display(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(5))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchmail", "run", str(job)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=30) == 0
    os.close(leader)
    text = seen.decode(errors="replace")
    assert "\x1b[" in text  # rich drew and cleared the bar
    assert "5 sent" in text

    quiet = subprocess.run(
        [sys.executable, "-m", "batchmail", "run", str(job), "--new-run", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert quiet.returncode == 0
    assert quiet.stdout.splitlines() == [quiet.stdout.splitlines()[-1]]  # the summary only


def test_the_event_log_has_one_line_per_event_and_no_secret(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server(
        auth=("mailer", PASSWORD),
        auth_require_tls=False,
        script=Script(rcpt_replies={"user2@example.com": [REFUSED]}),
    )
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    job = make_job(
        tmp_path,
        server.port,
        smtp={
            "username_env": "SMTP_USERNAME",
            "password_env": "SMTP_PASSWORD",
            "allow_insecure_auth": True,
        },
    )
    log = tmp_path / "events.jsonl"
    assert run_cli(capsys, "run", job, "--log", log, "--report", tmp_path / "r.json").code == 1

    text = log.read_text()
    assert PASSWORD not in text
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in events] == [
        "run_started",
        "delivery",
        "delivery",
        "delivery",
        "run_finished",
    ]
    deliveries = {e["email"]: e for e in events if e["event"] == "delivery"}
    assert deliveries["user2@example.com"]["status"] == "failed"
    assert deliveries["user2@example.com"]["code"] == 550
    ids = {r["email"]: r["message_id"] for r in report_of(tmp_path / "r.json")["recipients"]}
    assert all(deliveries[email]["message_id"] == ids[email] for email in deliveries)
    assert all(e["seconds"] >= 0 for e in deliveries.values())
    assert events[-1]["summary"]["sent"] == 2


def test_expect_count_guards_unattended_runs(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    wrong = run_cli(capsys, "run", job, "--expect-count", "4")
    assert (wrong.code, server.connections) == (2, 0)
    assert "3 recipients, but --expect-count says 4: nothing was sent" in wrong.err
    assert run_cli(capsys, "validate", job, "--expect-count", "4").code == 2
    assert run_cli(capsys, "validate", job, "--expect-count", "3").code == 0
    assert run_cli(capsys, "run", job, "--expect-count", "3").code == 0


def test_max_recipients_guards_the_job_itself(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, limits={"max_recipients": 2})
    result = run_cli(capsys, "run", job)
    assert (result.code, server.connections) == (2, 0)
    assert "3 recipients, over limits.max_recipients (2)" in result.err


def test_the_example_ci_workflows_run_a_repository_job() -> None:
    root = Path(__file__).resolve().parents[2]
    github = yaml.safe_load((root / "examples/ci/github-actions.yml").read_text())
    gitlab = yaml.safe_load((root / "examples/ci/gitlab-ci.yml").read_text())
    steps = " ".join(str(s.get("run", "")) for s in github["jobs"]["build-and-mail"]["steps"])
    assert "batchmail run jobs/ci-artifacts.yaml" in steps
    assert "${{ secrets.SMTP_PASSWORD }}" in json.dumps(github)
    assert "batchmail run jobs/ci-artifacts.yaml" in " ".join(gitlab["mail-artifacts"]["script"])


def logged_parallel_run(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    people: int,
    refusals: dict[str, str],
) -> tuple[Result, list[dict[str, Any]]]:
    """A run over two sending processes with `--log`, the server refusing `refusals` (user ->
    RCPT reply); its result and the events it logged."""
    rcpt_replies = {f"{user}@example.com": [reply] for user, reply in refusals.items()}
    server = smtp_server(script=Script(rcpt_replies=rcpt_replies))
    job = make_job(tmp_path, server.port, recipients=recipients(people), rate={"connections": 2})
    log = tmp_path / "events.jsonl"
    result = run_cli(capsys, "run", job, "--log", log)
    return result, [json.loads(line) for line in log.read_text().splitlines()]


def test_a_long_non_ascii_reply_keeps_the_event_stream_whole(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event line is written whole or not at all: a reply too long for one cannot cut it."""
    reply = "550 5.1.1 " + "Ü" * 30 + "\U0001f600" * 960  # about 3,900 bytes of UTF-8
    result, events = logged_parallel_run(tmp_path, smtp_server, capsys, 20, {"user3": reply})
    assert result.code == 1

    deliveries = {e["email"]: e for e in events if e["event"] == "delivery"}
    assert len(deliveries) == 20
    refused = deliveries["user3@example.com"]
    assert refused["status"] == "failed"
    assert refused["response"] == "5.1.1 " + "Ü" * 30 + "\U0001f600" * 164


def test_every_delivery_of_sending_processes_reaches_the_event_log(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Forked processes write their events in batches: none is lost at the end, and a failure
    is shown as it happens."""
    result, events = logged_parallel_run(tmp_path, smtp_server, capsys, 60, {"user7": REFUSED})
    assert result.code == 1

    deliveries = [e for e in events if e["event"] == "delivery"]
    assert sorted(e["email"] for e in deliveries) == sorted(
        f"user{i}@example.com" for i in range(1, 61)
    )
    assert [e["status"] for e in deliveries if e["email"] == "user7@example.com"] == ["failed"]
    assert f"user7@example.com: failed: {REFUSED}" in result.err
    assert events[-1]["event"] == "run_finished"
