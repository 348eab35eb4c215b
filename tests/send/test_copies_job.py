"""Acceptance: a job with templated `cc` and `bcc`, sent with `batchmail run` to a real SMTP
server: one transaction per recipient with every envelope recipient, the Cc header in the
bytes and no trace of the Bcc, a refused cc in the report, the message counted as sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import Script, SmtpServerFactory
from support import make_job, parse, recipients, report_of, run_cli

ARCHIVE = "archive@example.org"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-command-at-a-time"])
def test_templated_cc_and_bcc_go_in_one_transaction_and_a_refused_cc_is_reported(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    pipelining: bool,
) -> None:
    people = [
        {**person, "manager": f"lead{n}@example.com"}
        for n, person in enumerate(recipients(3), start=1)
    ]
    refusal = {"lead2@example.com": ["550 5.1.1 No such user"]}
    server = smtp_server(script=Script(pipelining=pipelining, rcpt_replies=refusal))
    job = make_job(
        tmp_path,
        server.port,
        recipients=people,
        cc="Lead of {{ team }} <{{ manager }}>",
        bcc=ARCHIVE,
    )
    report = tmp_path / "report.json"

    result = run_cli(capsys, "run", job, "--report", report)

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [
        ["user1@example.com", "lead1@example.com", ARCHIVE],
        ["user2@example.com", ARCHIVE],  # lead2 refused
        ["user3@example.com", "lead3@example.com", ARCHIVE],
    ]
    for n, received in enumerate(server.messages, start=1):
        message = parse(received.data)
        assert message["Cc"] == f"Lead of core <lead{n}@example.com>"
        assert message["Bcc"] is None
        assert b"Bcc" not in received.data
        assert ARCHIVE.encode() not in received.data
    summary = report_of(report)["summary"]
    assert (summary["sent"], summary["failed"]) == (3, 0)
    entries = report_of(report)["recipients"]
    assert [e["status"] for e in entries] == ["sent"] * 3
    assert [e["refused"] for e in entries] == [
        [],
        [{"email": "lead2@example.com", "smtp_code": 550, "smtp_response": "5.1.1 No such user"}],
        [],
    ]
