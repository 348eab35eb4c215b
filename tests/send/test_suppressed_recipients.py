"""Suppressed recipients in a run: never mailed, reported `suppressed`, no failure; the files are
read by every invocation, so that addresses added to them between invocations are honoured by
the resumed run and by a new one."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pytest
from smtpserver import Script, SmtpServer, SmtpServerFactory
from support import make_job, recipients, report_of, run_cli

LATER = "451 4.3.0 Try again later"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)


def statuses(report: Path) -> dict[str, str]:
    return {r["email"]: r["status"] for r in report_of(report)["recipients"]}


def rcpt_seen(server: SmtpServer) -> collections.Counter[str]:
    return collections.Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def people(count: int) -> list[dict[str, str]]:
    listed = recipients(count)
    listed.append({"email": "ann@Bücher.example", "name": "Ann", "team": "idn"})
    return listed


def suppress_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "lists" / "unsubscribed.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def append(path: Path, line: str) -> None:
    """As `batchmail bounces` does: one more line at the end."""
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{line}\n")


def test_suppressed_recipients_are_not_mailed_and_are_reported_without_failing_the_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    suppress_file(tmp_path, "# unsubscribed", "USER2@example.com", "@xn--bcher-kva.EXAMPLE")
    job = make_job(tmp_path, server.port, recipients=people(4), suppress=["lists/unsubscribed.txt"])
    report = tmp_path / "report.json"

    result = run_cli(
        capsys,
        "run",
        job,
        "--report",
        report,
        "--junit",
        tmp_path / "junit.xml",
        "--failed-csv",
        tmp_path / "failed.csv",
    )

    assert result.code == 0, result.err
    assert set(rcpt_seen(server)) == {"user1@example.com", "user3@example.com", "user4@example.com"}
    data = report_of(report)
    assert data["status"] == "completed"
    assert statuses(report) == {
        "user1@example.com": "sent",
        "user2@example.com": "suppressed",
        "user3@example.com": "sent",
        "user4@example.com": "sent",
        "ann@Bücher.example": "suppressed",
    }
    assert data["summary"]["suppressed"] == 2
    assert data["summary"]["sent"] == 3
    assert data["summary"]["total"] == 5
    entry = data["recipients"][1]
    assert entry["smtp_response"] == "listed in lists/unsubscribed.txt:2"
    assert (entry["attempts"], entry["message_id"], entry["smtp_code"]) == (0, None, None)
    assert "5 recipients: 3 sent, 2 suppressed" in result.out
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert 'skipped="2"' in junit
    assert (
        'name="user2@example.com"><skipped message="suppressed: listed in '
        'lists/unsubscribed.txt:2"/>' in junit
    )
    with (tmp_path / "failed.csv").open(encoding="utf-8") as rows:
        assert [row["email"] for row in csv.DictReader(rows)] == []


def test_a_dry_run_writes_no_message_for_a_suppressed_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suppress_file(tmp_path, "user1@example.com")
    job = make_job(tmp_path, recipients=recipients(3), suppress=["lists/unsubscribed.txt"])
    result = run_cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out")
    assert result.code == 0, result.err
    names = sorted(p.name for p in (tmp_path / "out").glob("*.eml"))
    assert len(names) == 2
    assert not any("user1" in name for name in names)
    assert statuses(tmp_path / "out" / "report.json")["user1@example.com"] == "suppressed"


def test_validate_renders_everyone_and_says_how_many_are_suppressed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suppress_file(tmp_path, "user1@example.com", "@bücher.example")
    job = make_job(tmp_path, recipients=people(3), suppress=["lists/unsubscribed.txt"])
    result = run_cli(capsys, "validate", job)
    assert (result.code, result.out.strip()) == (
        0,
        "job.yaml: valid: 4 messages, 2 of them suppressed",
    )

    # A template error is an error whoever it concerns, a suppressed recipient too.
    broken = people(3)
    del broken[0]["name"]  # the templates use it
    job = make_job(tmp_path, recipients=broken, suppress=["lists/unsubscribed.txt"])
    result = run_cli(capsys, "validate", job)
    assert result.code == 2
    assert "user1@example.com" in result.err


def test_an_address_added_while_a_run_is_unfinished_is_suppressed_when_it_resumes(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(script=Script(rcpt_replies={"user3@example.com": [LATER]}))
    listed = suppress_file(tmp_path, "# bounces are appended below")
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(4),
        suppress=["lists/unsubscribed.txt"],
        retry={"max_attempts": 1},
    )
    report = tmp_path / "report.json"

    first = run_cli(capsys, "run", job, "--report", report)
    assert first.code == 75, first.err
    run_id = report_of(report)["run_id"]
    assert statuses(report)["user3@example.com"] == "deferred"
    seen = len(server.messages)

    append(listed, "user3@example.com")
    second = run_cli(capsys, "run", job, "--report", report)

    assert second.code == 0, second.err
    assert "inputs changed" not in second.err
    data = report_of(report)
    assert (data["run_id"], data["status"]) == (run_id, "completed")
    assert statuses(report) == {
        "user1@example.com": "skipped",
        "user2@example.com": "skipped",
        "user3@example.com": "suppressed",
        "user4@example.com": "skipped",
    }
    assert data["summary"]["suppressed"] == 1
    assert len(server.messages) == seen  # nothing more went out

    # Taken off the list, the recipient is mailed by the next invocation of the same run.
    listed.write_text("# bounces are appended below\n", encoding="utf-8")
    server.script.rcpt_replies.clear()
    third = run_cli(capsys, "run", job, "--report", report)
    assert third.code == 0, third.err
    assert report_of(report)["run_id"] == run_id
    assert statuses(report)["user3@example.com"] == "sent"
    assert rcpt_seen(server)["user3@example.com"] == 1


def test_a_new_run_skips_an_address_added_since_the_last_one(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    listed = suppress_file(tmp_path)
    job = make_job(
        tmp_path, server.port, recipients=recipients(3), suppress="lists/unsubscribed.txt"
    )
    report = tmp_path / "report.json"
    assert run_cli(capsys, "run", job, "--report", report).code == 0
    first_run = report_of(report)["run_id"]
    assert rcpt_seen(server) == dict.fromkeys(
        ("user1@example.com", "user2@example.com", "user3@example.com"), 1
    )

    append(listed, "user2@example.com")
    again = run_cli(capsys, "run", job, "--report", report, "--new-run")

    assert again.code == 0, again.err
    assert report_of(report)["run_id"] != first_run
    assert statuses(report) == {
        "user1@example.com": "sent",
        "user2@example.com": "suppressed",
        "user3@example.com": "sent",
    }
    assert rcpt_seen(server)["user2@example.com"] == 1  # the first run's message only


def test_every_sending_process_honours_the_list(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    suppress_file(tmp_path, *(f"user{i}@example.com" for i in range(1, 41, 3)))
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(40),
        attachments=None,
        suppress=["lists/unsubscribed.txt"],
        rate={"connections": 4},
    )
    report = tmp_path / "report.json"
    result = run_cli(capsys, "run", job, "--report", report)
    assert result.code == 0, result.err
    suppressed = {f"user{i}@example.com" for i in range(1, 41, 3)}
    assert not suppressed & set(rcpt_seen(server))
    assert len(server.messages) == 40 - len(suppressed)
    assert {e for e, s in statuses(report).items() if s == "suppressed"} == suppressed


def test_a_bad_line_in_the_list_stops_the_run_before_anything_is_sent(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    suppress_file(tmp_path, "user1@example.com", "user2 at example.com")
    job = make_job(
        tmp_path, server.port, recipients=recipients(3), suppress=["lists/unsubscribed.txt"]
    )
    result = run_cli(capsys, "run", job)
    assert result.code == 2
    assert result.err.startswith(
        "lists/unsubscribed.txt:2: suppress: 'user2 at example.com' is not a valid address"
    )
    assert "Traceback" not in result.err
    assert server.messages == []
