"""Delivery you can trust: journal, resume, retries, faults, signals and quotas."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from smtpserver import Received, Script, SmtpServer, SmtpServerFactory
from support import make_job, parse, recipients, report_of, run_cli

from batchmail.state.job_lock import job_lock


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)


def statuses(report: Path) -> dict[str, str]:
    return {r["email"]: r["status"] for r in report_of(report)["recipients"]}


def delivered(server: SmtpServer) -> collections.Counter[str]:
    return collections.Counter(m.rcpt_tos[0] for m in server.messages)


def message_ids(server: SmtpServer) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for message in server.messages:
        ids[message.rcpt_tos[0]].add(parse(message.data)["Message-ID"])
    return ids


def test_permanent_failures_are_retried_only_by_the_next_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = "550 5.1.1 No such user"
    script = Script(
        rcpt_replies={
            "user3@example.com": [refused, "250 OK"],
            "user7@example.com": [refused, "250 OK"],
        }
    )
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(10))
    report = tmp_path / "report.json"

    first = run_cli(capsys, "run", job, "--report", report)
    assert first.code == 1
    assert [e for e, s in statuses(report).items() if s == "failed"] == [
        "user3@example.com",
        "user7@example.com",
    ]
    assert len(server.messages) == 8

    second = run_cli(capsys, "run", job, "--report", report)
    assert second.code == 0, second.err
    assert [m.rcpt_tos[0] for m in server.messages[8:]] == [
        "user3@example.com",
        "user7@example.com",
    ]
    assert set(delivered(server).values()) == {1}
    assert collections.Counter(statuses(report).values()) == {"skipped": 8, "sent": 2}


def test_temporary_failures_are_retried_within_the_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    later = "451 4.3.0 Try again later"
    server = smtp_server(
        script=Script(rcpt_replies={"user2@example.com": [later, later, "250 OK"]})
    )
    job = make_job(tmp_path, server.port, retry={"max_attempts": 3, "window": 0.6})
    report = tmp_path / "report.json"
    result = run_cli(capsys, "run", job, "--report", report)

    assert result.code == 0, result.err
    assert delivered(server) == {f"user{i}@example.com": 1 for i in (1, 2, 3)}
    entry = report_of(report)["recipients"][1]
    assert (entry["status"], entry["attempts"], entry["smtp_code"]) == ("sent", 3, 250)


def test_a_recipient_deferred_forever_is_finished_by_a_later_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(rcpt_replies={"user2@example.com": ["451 4.7.1 Greylisted"]})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, retry={"max_attempts": 2, "window": 0.2})
    report = tmp_path / "report.json"

    first = run_cli(capsys, "run", job, "--report", report)
    assert first.code == 75
    entry = report_of(report)["recipients"][1]
    assert (entry["status"], entry["smtp_code"], entry["attempts"]) == ("deferred", 451, 2)
    assert "user2@example.com: deferred: 451 4.7.1 Greylisted" in first.err

    script.rcpt_replies.clear()
    second = run_cli(capsys, "run", job, "--report", report)
    assert second.code == 0, second.err
    assert delivered(server) == {f"user{i}@example.com": 1 for i in (1, 2, 3)}
    assert statuses(report)["user2@example.com"] == "sent"


def test_dropped_connections_lose_and_double_nobody(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(script=Script(drop_after=3))
    job = make_job(tmp_path, server.port, recipients=recipients(20))
    result = run_cli(capsys, "run", job)

    assert result.code == 0, result.err
    assert delivered(server) == {f"user{i}@example.com": 1 for i in range(1, 21)}
    assert server.connections == 7  # 20 messages, the server hangs up after every 3rd


def test_a_stall_after_the_message_is_unknown_and_resent_with_the_same_id(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(stall_after_data=3, stall_rcpts={"user2@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, smtp={"timeout": 0.5})
    report = tmp_path / "report.json"

    first = run_cli(capsys, "run", job, "--report", report)
    assert first.code == 75
    assert statuses(report) == {
        "user1@example.com": "sent",
        "user2@example.com": "unknown",
        "user3@example.com": "sent",
    }

    script.stall_after_data = None
    second = run_cli(capsys, "run", job, "--report", report)
    assert second.code == 0, second.err
    assert delivered(server)["user2@example.com"] == 2
    assert len(message_ids(server)["user2@example.com"]) == 1


def test_on_unknown_skip_does_not_resend(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(stall_after_data=3, stall_rcpts={"user2@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, smtp={"timeout": 0.5})
    assert run_cli(capsys, "run", job).code == 75
    script.stall_after_data = None

    again = run_cli(capsys, "run", job, "--on-unknown", "skip")
    assert again.code == 75  # still unknown: nobody can say whether it arrived
    assert delivered(server)["user2@example.com"] == 1


def test_a_finished_run_sends_nothing_and_new_run_sends_everything(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    report = tmp_path / "report.json"
    assert run_cli(capsys, "run", job, "--report", report).code == 0
    connections = server.connections

    again = run_cli(capsys, "run", job, "--report", report)
    assert again.code == 0
    assert server.connections == connections
    assert set(statuses(report).values()) == {"skipped"}
    assert "3 skipped" in again.out

    fresh = run_cli(capsys, "run", job, "--report", report, "--new-run")
    assert fresh.code == 0
    assert set(delivered(server).values()) == {2}
    assert all(len(ids) == 2 for ids in message_ids(server).values())


def test_changed_inputs_while_a_run_is_unfinished_stop_the_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(script=Script(rcpt_replies={"user3@example.com": ["451 4.3.0 Later"]}))
    job = make_job(tmp_path, server.port, retry={"max_attempts": 1})
    assert run_cli(capsys, "run", job).code == 75
    (tmp_path / "templates" / "body.txt.j2").write_text("A different text, {{ name }}.\n")
    before = len(server.messages)

    changed = run_cli(capsys, "run", job)
    assert changed.code == 2
    assert "inputs changed" in changed.err
    assert "2 recipients already reached" in changed.err
    assert "--new-run" in changed.err
    assert len(server.messages) == before


def test_a_second_process_on_the_same_job_is_refused(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    with job_lock(tmp_path / ".batchmail", "job"):
        result = run_cli(capsys, "run", job)
    assert result.code == 75
    assert "another batchmail process is running job 'job'" in result.err
    assert server.connections == 0


def test_the_sender_refused_again_and_again_stops_the_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(mail_reply="550 5.7.1 Sender not allowed")
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(10))
    report = tmp_path / "report.json"
    result = run_cli(capsys, "run", job, "--report", report)

    assert result.code == 1
    assert "refused the sender reports@example.com 3 times in a row" in result.err
    assert collections.Counter(statuses(report).values()) == {"failed": 3, "pending": 7}

    script.mail_reply = None
    assert run_cli(capsys, "run", job, "--report", report).code == 0
    assert delivered(server) == {f"user{i}@example.com": 1 for i in range(1, 11)}


def test_a_daily_quota_holds_across_runs(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(8), rate={"per_day": 5})
    report = tmp_path / "report.json"
    first = run_cli(capsys, "run", job, "--report", report)

    assert first.code == 75
    assert len(server.messages) == 5
    assert collections.Counter(statuses(report).values()) == {"sent": 5, "deferred": 3}
    assert "quota reached: 5 messages per day; the next message may go at" in first.err

    connections = server.connections
    second = run_cli(capsys, "run", job, "--report", report)
    assert second.code == 75
    assert len(server.messages) == 5
    assert server.connections == connections
    assert "the next message may go at" in second.err


def test_an_unwritable_report_is_exit_74(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    result = run_cli(capsys, "run", job, "--report", "/dev/full")
    assert result.code == 74
    assert "cannot write the report /dev/full" in result.err


FILL_THE_DISK = """
import resource, signal, sys
from pathlib import Path
from batchmail.errors import StateError
from batchmail.outputs.report import ReportHead, full_summary, write_report

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
entries = ({"email": f"user{i}@example.com", "status": "sent"} for i in range(5000))
try:
    write_report(Path(sys.argv[1]), ReportHead("job", False, 0, 0, "completed"),
                 full_summary({"sent": 5000}), entries)
except StateError as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


def test_an_existing_report_is_never_half_overwritten(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"old": true}')
    result = subprocess.run(
        [sys.executable, "-c", FILL_THE_DISK, str(report)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 74, result.stderr
    assert "cannot write the report" in result.stdout
    assert report.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_an_unwritable_state_dir_is_exit_74_and_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    (tmp_path / "not-a-dir").write_text("")
    result = run_cli(capsys, "run", job, "--state-dir", tmp_path / "not-a-dir" / "state")
    assert result.code == 74
    assert server.connections == 0


# --- whole processes, killed and interrupted -------------------------------------------------


def spawn(job: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHMAIL_STATE_DIR"}
    return subprocess.Popen(
        [sys.executable, "-m", "batchmail", "run", str(job), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def assert_everyone_once_but(server: SmtpServer, count: int, in_flight: int) -> None:
    """Every recipient delivered; at most `in_flight` twice, and then with one Message-ID."""
    times = delivered(server)
    assert set(times) == {f"user{i}@example.com" for i in range(1, count + 1)}
    doubled = [rcpt for rcpt, n in times.items() if n > 1]
    assert len(doubled) <= in_flight
    assert all(times[rcpt] == 2 for rcpt in doubled)
    ids = message_ids(server)
    assert all(len(ids[rcpt]) == 1 for rcpt in doubled)


def test_sigkill_between_messages_loses_and_doubles_nobody(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(10), rate={"per_second": 4})
    process = spawn(job)
    server.wait_for(3, timeout=20)
    time.sleep(0.1)  # well inside the 0.25 s pause before the 4th message
    process.kill()
    process.wait()

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 10, in_flight=0)


def test_sigkill_while_the_server_holds_the_reply_doubles_only_that_message(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    script = Script(stall_after_data=30, stall_rcpts={"user4@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(10))
    process = spawn(job)
    server.wait_for(4, timeout=20)
    process.kill()
    process.wait()
    script.stall_after_data = None

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 10, in_flight=1)
    assert delivered(server)["user4@example.com"] == 2


def test_sigkill_right_after_the_servers_250(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    process: subprocess.Popen[str] | None = None

    def kill_the_client(received: Received) -> None:
        if received.rcpt_tos == ["user5@example.com"] and process is not None:
            process.kill()

    server = smtp_server(script=Script(after_accept=kill_the_client))
    job = make_job(tmp_path, server.port, recipients=recipients(10))
    process = spawn(job)
    assert process.wait(timeout=20) == -signal.SIGKILL
    server.script.after_accept = None

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 10, in_flight=1)


def test_sigint_finishes_the_message_in_progress_and_sends_no_more(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(10), rate={"per_second": 2})
    report = tmp_path / "report.json"
    process = spawn(job, "--report", str(report))
    server.wait_for(3, timeout=20)
    time.sleep(0.1)  # inside the pause before the 4th message
    process.send_signal(signal.SIGINT)
    started = sum(1 for _, verb in server.commands if verb == "MAIL")
    code, _, err = finish(process)

    assert code == 130, err
    assert sum(1 for _, verb in server.commands if verb == "MAIL") == started
    data = report_of(report)
    assert data["status"] == "interrupted"
    assert data["summary"]["sent"] == len(server.messages)
    assert data["summary"]["pending"] == 10 - len(server.messages)

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 10, in_flight=0)


LIMITED_RUN = """
import resource, signal, sys
import batchmail.state.journal
from batchmail.cli import main

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
batchmail.state.journal.FOLD_EVERY = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(main(sys.argv[3:]))
"""


def run_on_a_full_disk(job: Path, file_size: int, fold_every: int) -> str:
    """Run the job with no file allowed past file_size bytes: exit 74; its error output."""
    limited = subprocess.run(
        [sys.executable, "-c", LIMITED_RUN, str(file_size), str(fold_every), "run", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert limited.returncode == 74, limited.stderr
    assert "cannot write the journal" in limited.stderr
    return limited.stderr


@pytest.mark.parametrize("connections", [1, 2])  # 2: two sending processes, a log each
def test_a_journal_log_that_cannot_be_written_stops_sending(
    tmp_path: Path, smtp_server: SmtpServerFactory, connections: int
) -> None:
    """Disk full on the record log mid-run: exit 74, and no message went out without its
    record. Long replies make the log, not SQLite, meet the limit first."""
    long_reply = "250 " + "queued " * 600
    people = recipients(300)
    script = Script(data_replies={p["email"]: [long_reply] for p in people})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=people, rate={"connections": connections})
    err = run_on_a_full_disk(job, 200_000, fold_every=10_000)
    assert ".log: " in err  # the record log's error, not a later one
    assert 0 < len(server.messages) < 300

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 300, in_flight=connections)  # one per session at most


def test_a_journal_that_cannot_be_folded_into_stops_sending(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Disk full on SQLite while the records are folded in mid-run: exit 74; the records stay
    in their log, and the next run folds them in before it chooses whom to send to."""
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(300))
    run_on_a_full_disk(job, 400_000, fold_every=20)
    assert 0 < len(server.messages) < 300

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 300, in_flight=0)


def test_a_second_sigint_leaves_at_once_with_a_usable_journal(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    script = Script(stall_after_data=30, stall_rcpts={"user2@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(4))
    process = spawn(job)
    server.wait_for(2, timeout=20)  # the 2nd message is held: the first SIGINT waits for it
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 130
    script.stall_after_data = None

    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 4, in_flight=1)


# --- several sending processes (a job without pacing and with rate.connections > 1) ---------


@pytest.mark.parametrize("connections", [2, 4])  # 4: two sessions in each process
def test_parallel_processes_deliver_everyone_once(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    connections: int,
) -> None:
    server = smtp_server(script=Script(rcpt_replies={"user7@example.com": ["550 5.1.1 No"]}))
    job = make_job(
        tmp_path, server.port, recipients=recipients(40), rate={"connections": connections}
    )
    report = tmp_path / "report.json"
    result = run_cli(capsys, "run", job, "--report", report)

    assert result.code == 1
    assert server.connections == connections
    per_session = collections.Counter(m.session for m in server.messages)
    assert len(per_session) == connections, per_session
    assert min(per_session.values()) >= 5, per_session
    assert sorted(delivered(server)) == sorted(
        f"user{i}@example.com" for i in range(1, 41) if i != 7
    )
    assert set(delivered(server).values()) == {1}
    assert statuses(report)["user7@example.com"] == "failed"
    assert report_of(report)["summary"]["sent"] == 39


def test_parallel_processes_stop_on_sigint_and_resume(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    script = Script(stall_after_data=0.5, stall_rcpts={"user9@example.com", "user10@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(30), rate={"connections": 2})
    report = tmp_path / "report.json"
    process = spawn(job, "--report", str(report))
    server.wait_for(9, timeout=20)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)

    assert code == 130, err
    assert report_of(report)["status"] == "interrupted"
    assert len(server.messages) < 30
    script.stall_after_data = None
    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 30, in_flight=0)


def test_parallel_processes_die_with_a_killed_parent(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    script = Script(stall_after_data=30, stall_rcpts={"user5@example.com", "user6@example.com"})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(20), rate={"connections": 2})
    process = spawn(job)
    server.wait_for(6, timeout=20)
    process.kill()
    process.wait()
    time.sleep(0.5)
    count = len(server.messages)
    time.sleep(0.5)
    assert len(server.messages) == count  # the sending processes are gone too

    script.stall_after_data = None
    code, _, err = finish(spawn(job))
    assert code == 0, err
    assert_everyone_once_but(server, 20, in_flight=2)


# --- several sessions in one process, driven from one thread -------------------------------


def held_reply_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str], hold: float
) -> tuple[list[tuple[float, str]], dict[str, dict[str, object]]]:
    """A paced job (one process, 10 messages a second) with two sessions, the server holding
    user2's reply for `hold` seconds; smtp.timeout is 1 s. When the server took each message,
    and each delivery event."""
    taken: list[tuple[float, str]] = []
    script = Script(stall_after_data=hold, stall_rcpts={"user2@example.com"})
    script.after_accept = lambda message: taken.append((time.monotonic(), message.rcpt_tos[0]))
    server = smtp_server(script=script)
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(20),
        rate={"connections": 2, "per_second": 10},
        smtp={"timeout": 1},
    )
    log = tmp_path / "events.jsonl"
    run_cli(capsys, "run", job, "--log", log)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return taken, {e["email"]: e for e in events if e["event"] == "delivery"}


def test_a_session_awaiting_its_reply_holds_up_no_other(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    taken, deliveries = held_reply_run(tmp_path, smtp_server, capsys, hold=0.8)

    held_at = next(when for when, rcpt in taken if rcpt == "user2@example.com")
    meanwhile = [rcpt for when, rcpt in taken if held_at < when < held_at + 0.75]
    assert len(meanwhile) >= 8, meanwhile  # the first second's other nine, on the other session
    assert {e["status"] for e in deliveries.values()} == {"sent"}
    assert len(deliveries) == 20


def test_a_reply_that_never_comes_ends_unknown_at_the_timeout(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    _, deliveries = held_reply_run(tmp_path, smtp_server, capsys, hold=4.0)

    held = deliveries.pop("user2@example.com")
    assert (held["status"], held["response"]) == (
        "unknown",
        "no reply after the message was sent: timed out",
    )
    # Given up at its own deadline, while the other session still had messages to send.
    assert 0.9 <= float(held["seconds"]) < 1.6, held
    assert {e["status"] for e in deliveries.values()} == {"sent"}
    assert len(deliveries) == 19


def test_the_state_dir_comes_from_the_option_or_the_environment(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path / "job", server.port)
    monkeypatch.setenv("BATCHMAIL_STATE_DIR", str(tmp_path / "from-env"))
    assert run_cli(capsys, "run", job).code == 0
    assert (tmp_path / "from-env" / "journal.sqlite3").is_file()
    assert (tmp_path / "from-env" / "job.report.json").is_file()
    assert not (tmp_path / "job" / ".batchmail").exists()

    again = run_cli(capsys, "run", job)  # the same journal: everybody was reached already
    assert "3 skipped" in again.out
    elsewhere = run_cli(capsys, "run", job, "--state-dir", tmp_path / "from-option")
    assert "3 sent" in elsewhere.out  # another journal knows nobody: the option wins
    assert (tmp_path / "from-option" / "journal.sqlite3").is_file()


def test_parallel_validation_refuses_a_problem_in_any_share_and_lists_all_in_order(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each process validates its share; nothing is sent when any share is invalid, and the
    problems read as one pass would list them."""
    server = smtp_server()
    people = recipients(10)
    del people[3]["team"]  # row 4: its message cannot be rendered (the first share)
    people[5]["email"] = "not-an-address"  # row 6: refused as a row
    del people[7]["team"]  # row 8: its message cannot be rendered (the second share)
    job = make_job(tmp_path, server.port, recipients=people, rate={"connections": 2})
    result = run_cli(capsys, "run", job)

    assert result.code == 2
    assert server.connections == 0
    lines = result.err.splitlines()
    assert len(lines) == 3, result.err
    assert re.search(r"'team' is undefined.*user4@example\.com", lines[0])
    assert "'not-an-address' is not a valid address" in lines[1]
    assert re.search(r"'team' is undefined.*user8@example\.com", lines[2])


def test_parallel_validation_warns_once_and_matches_one_process(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repeated address is reported once, not by every process; and the inputs' digest does
    not depend on how many processes built the messages: the same job with one session is the
    same, finished run."""
    server = smtp_server()
    people = [*recipients(9), recipients(3)[2]]
    job = make_job(tmp_path, server.port, recipients=people, rate={"connections": 2})
    first = run_cli(capsys, "run", job)
    assert first.code == 0, first.err
    assert first.err.count("user3@example.com appears 2 times") == 1
    assert len(server.messages) == 9

    make_job(tmp_path, server.port, recipients=people, rate={"connections": 1})
    again = run_cli(capsys, "run", job)
    assert again.code == 0, again.err
    assert "9 skipped" in again.out
    assert len(server.messages) == 9
