"""The memory transport as a library user meets it: a whole job run through `api.run_job`, by a
send loop that has only `send()` to call (no pipelining, no session to open)."""

from __future__ import annotations

from pathlib import Path

from support import make_job, parse, recipients, report_of

from batchmail.api import RunOptions, run_job
from batchmail.transport.memory import Kept, MemoryTransport


def test_a_job_runs_through_a_transport_that_only_sends(tmp_path: Path) -> None:
    job = make_job(tmp_path, recipients=recipients(5), rate={"connections": 2})
    outbox: list[Kept] = []
    options = RunOptions(state_dir=tmp_path / "state", transports=lambda: MemoryTransport(outbox))

    result = run_job(job, options)

    assert (result.exit_code, result.status) == (0, "completed")
    assert [kept.recipients for kept in outbox] == [(f"user{n}@example.com",) for n in range(1, 6)]
    assert {kept.sender for kept in outbox} == {"reports@example.com"}
    assert [parse(kept.data)["Subject"] for kept in outbox] == [
        f"Report for User {n}" for n in range(1, 6)
    ]
    report = report_of(result.report)
    assert [r["status"] for r in report["recipients"]] == ["sent"] * 5
    assert [r["smtp_code"] for r in report["recipients"]] == [250] * 5

    again = run_job(job, RunOptions(state_dir=tmp_path / "state", transports=options.transports))

    assert again.exit_code == 0
    assert len(outbox) == 5  # delivered once: the journal knows


def test_a_refused_recipient_fails_the_run_and_the_others_are_delivered(tmp_path: Path) -> None:
    job = make_job(tmp_path, recipients=recipients(3))
    outbox: list[Kept] = []
    refusing = lambda: MemoryTransport(outbox, refuse=["user2@example.com"])  # noqa: E731

    result = run_job(job, RunOptions(state_dir=tmp_path / "state", transports=refusing))

    assert result.exit_code == 1
    assert [kept.recipients for kept in outbox] == [("user1@example.com",), ("user3@example.com",)]
    entries = report_of(result.report)["recipients"]
    assert [(e["email"], e["status"], e["smtp_code"]) for e in entries] == [
        ("user1@example.com", "sent", 250),
        ("user2@example.com", "failed", 550),
        ("user3@example.com", "sent", 250),
    ]
