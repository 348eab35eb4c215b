"""Copies of a recipient's message (cc, bcc) delivered through `batchmail run`, against a real
SMTP server, pipelined (RFC 2920) and not: one transaction per recipient with every envelope
recipient; a refused copy is reported and does not fail the message; a copy refused for now is
retried, to itself alone."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from smtpserver import Received, Script, SmtpServer, SmtpServerFactory
from support import make_job, recipients, report_of, run_cli

CC, BCC = "cc@example.com", "archive@example.org"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def people(count: int = 3, copies: str = f"{CC}, {BCC}") -> list[dict[str, Any]]:
    return [{**person, "copies": copies} for person in recipients(count)]


def job_with_copies(folder: Path, port: int, **settings: Any) -> Path:
    """A job whose recipients' copies are their `copies` field (comma-separated), as cc."""
    return make_job(folder, port, cc="{{ copies }}", **settings)


def delivered_to(server: SmtpServer) -> Counter[str]:
    """How many messages each address received."""
    return Counter(address for message in server.messages for address in message.rcpt_tos)


def without_date(data: bytes) -> bytes:
    return re.sub(rb"^Date: [^\r]*\r\n", b"", data, count=1, flags=re.MULTILINE)


def message_id(received: Received) -> str:
    found = re.search(rb"^Message-ID: (<[^>]+>)", received.data, re.MULTILINE)
    assert found is not None
    return found[1].decode()


def test_one_transaction_per_recipient_with_every_envelope_recipient(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    server = smtp_server(script=Script(pipelining=pipelining))
    job = job_with_copies(tmp_path, server.port, recipients=people())

    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert sorted(m.rcpt_tos for m in server.messages) == [
        [f"user{i}@example.com", CC, BCC] for i in (1, 2, 3)
    ]
    verbs = Counter(verb for _, verb in server.commands)
    assert (verbs["MAIL"], verbs["RCPT"], verbs["DATA"]) == (3, 9, 3)
    report = report_of(tmp_path / "report.json")
    assert report["summary"]["sent"] == 3
    assert [entry["refused"] for entry in report["recipients"]] == [[], [], []]


def test_a_refused_cc_is_reported_and_the_message_counts_as_sent(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    script = Script(pipelining=pipelining, rcpt_replies={CC: ["550 5.1.1 No such user"]})
    server = smtp_server(script=script)
    job = job_with_copies(tmp_path, server.port, recipients=people(2))
    outputs = ("--report", tmp_path / "r.json", "--junit", tmp_path / "j.xml")

    result = run_cli(capsys, "run", job, *outputs, "--failed-csv", tmp_path / "failed.csv")

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [
        ["user1@example.com", BCC],
        ["user2@example.com", BCC],
    ]
    report = report_of(tmp_path / "r.json")
    assert report["summary"]["sent"] == 2
    assert report["status"] == "completed"
    first = report["recipients"][0]
    assert (first["status"], first["smtp_code"]) == ("sent", 250)
    assert first["refused"] == [
        {"email": CC, "smtp_code": 550, "smtp_response": "5.1.1 No such user"}
    ]
    junit = (tmp_path / "j.xml").read_text(encoding="utf-8")
    assert "<failure" not in junit
    assert junit.count(f"copy refused: {CC}: 550 5.1.1 No such user\n") == 2
    with (tmp_path / "failed.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["email"], row["name"]) for row in rows] == [(CC, "User 1"), (CC, "User 2")]
    assert rows[0]["reason"] == (f"copy of user1@example.com refused: {CC}: 550 5.1.1 No such user")


def test_a_refused_primary_recipient_means_no_message_to_its_copies(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    refusal = {"user2@example.com": ["550 5.1.1 No such user"]}
    server = smtp_server(script=Script(pipelining=pipelining, rcpt_replies=refusal))
    job = job_with_copies(tmp_path, server.port, recipients=people())

    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 1
    assert [m.rcpt_tos[0] for m in server.messages] == ["user1@example.com", "user3@example.com"]
    assert delivered_to(server)[CC] == 2
    if not pipelining:  # not even DATA is sent
        assert Counter(verb for _, verb in server.commands)["DATA"] == 2
    entry = report_of(tmp_path / "report.json")["recipients"][1]
    assert (entry["status"], entry["smtp_code"], entry["refused"]) == ("failed", 550, [])


def test_a_cc_refused_for_now_is_retried_within_the_run_to_that_copy_only(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    script = Script(pipelining=pipelining, rcpt_replies={CC: ["451 4.3.0 Try later", "250 OK"]})
    server = smtp_server(script=script)
    retry = {"max_attempts": 3, "window": 0.5}
    job = job_with_copies(tmp_path, server.port, recipients=people(1), retry=retry)

    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [["user1@example.com", BCC], [CC]]
    assert delivered_to(server) == {"user1@example.com": 1, BCC: 1, CC: 1}
    first, again = server.messages
    assert message_id(first) == message_id(again)
    assert without_date(first.data) == without_date(again.data)  # Date is when it was sent
    report = report_of(tmp_path / "report.json")
    entry = report["recipients"][0]
    assert (entry["status"], entry["attempts"], entry["refused"]) == ("sent", 1, [])
    assert report["status"] == "completed"


@pytest.mark.parametrize("connections", [1, 2], ids=["one-process", "two-processes"])
def test_a_cc_still_refused_when_the_run_ends_is_exit_75_and_the_next_run_sends_only_to_it(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
    connections: int,
) -> None:
    script = Script(pipelining=pipelining, rcpt_replies={CC: ["451 4.3.0 Try later"]})
    server = smtp_server(script=script)
    retry = {"max_attempts": 2, "window": 0.2}
    rate = {"connections": connections}
    job = job_with_copies(tmp_path, server.port, recipients=people(2), retry=retry, rate=rate)
    report = tmp_path / "report.json"

    first = run_cli(capsys, "run", job, "--report", report)

    assert first.code == 75, first.err
    assert delivered_to(server) == {"user1@example.com": 1, "user2@example.com": 1, BCC: 2}
    entries = report_of(report)["recipients"]
    assert report_of(report)["status"] == "incomplete"
    assert [e["status"] for e in entries] == ["sent", "sent"]
    assert entries[0]["refused"] == [
        {"email": CC, "smtp_code": 451, "smtp_response": "4.3.0 Try later"}
    ]
    ids = [message_id(m) for m in server.messages]

    script.rcpt_replies.clear()
    second = run_cli(capsys, "run", job, "--report", report)

    assert second.code == 0, second.err
    assert [m.rcpt_tos for m in server.messages[2:]] == [[CC], [CC]]
    assert sorted(message_id(m) for m in server.messages[2:]) == sorted(ids)  # the same messages
    after = report_of(report)
    assert after["status"] == "completed"
    assert [e["refused"] for e in after["recipients"]] == [[], []]

    third = run_cli(capsys, "run", job, "--report", report)
    assert third.code == 0
    assert len(server.messages) == 4  # nothing more to send


def test_a_cc_refused_for_good_on_its_retry_stays_refused_and_the_run_ends(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = {CC: ["451 4.3.0 Try later", "550 5.7.1 Not from you"]}
    server = smtp_server(script=Script(rcpt_replies=replies))
    retry = {"max_attempts": 3, "window": 0.3}
    job = job_with_copies(tmp_path, server.port, recipients=people(1), retry=retry)

    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [["user1@example.com", BCC]]
    [entry] = report_of(tmp_path / "report.json")["recipients"]
    assert entry["refused"] == [
        {"email": CC, "smtp_code": 550, "smtp_response": "5.7.1 Not from you"}
    ]
    assert Counter(verb for _, verb in server.commands)["MAIL"] == 2


def test_copies_retried_one_after_another_carry_each_others_envelopes(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    """A retry round of several messages' copies: with pipelining, each copies-only envelope
    goes behind the content before it (RFC 2920), its replies one fewer than the first time's."""
    leads = [f"lead{n}@example.com" for n in (1, 2, 3)]
    crowd = [
        {**p, "copies": f"{lead}, {BCC}"} for p, lead in zip(recipients(3), leads, strict=True)
    ]
    later = {lead: ["451 4.3.0 Try later", "250 OK"] for lead in leads}
    server = smtp_server(script=Script(pipelining=pipelining, rcpt_replies=later))
    retry = {"max_attempts": 2, "window": 0.3}
    job = job_with_copies(tmp_path, server.port, recipients=crowd, retry=retry)

    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [
        *([f"user{n}@example.com", BCC] for n in (1, 2, 3)),
        *([lead] for lead in leads),
    ]
    assert [message_id(m) for m in server.messages[3:]] == [
        message_id(m) for m in server.messages[:3]
    ]
    assert [e["refused"] for e in report_of(tmp_path / "report.json")["recipients"]] == [[]] * 3
