"""`batchmail bounces` with the job's message fields: a bounce found by its VERP address alone,
and a bounce of a copy (cc) that names the copy, not the recipient."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from samples import bounce
from smtpserver import SmtpServerFactory
from support import cli, make_job, parse, recipients

SUPPRESSED = "suppressed.txt"
HEADER = "# unsubscribed, bounced or complaining\n"
VERP = "bounces+{{ email | replace('@', '=') }}@example.com"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def maildir_of(folder: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for data in messages:
        box.add(data)
    return folder


def test_a_bounce_without_the_original_is_matched_by_its_verp_address(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    (tmp_path / SUPPRESSED).write_text(HEADER)
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(3),
        attachments=None,
        suppress=[SUPPRESSED],
        envelope_from=VERP,
    )
    code, _, err = cli(capsys, "run", job)
    assert code == 0, err
    verp = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
    assert verp["user2@example.com"] == "bounces+user2=example.com@example.com"
    # Delivered to the VERP address, naming no Message-ID and, as some receivers do, another
    # form of the recipient's address.
    notification = bounce(
        message_id="",
        recipient="USER2@example.com",
        to=verp["user2@example.com"],
        returned=False,
    )
    folder = maildir_of(tmp_path / "Maildir", [notification])

    code, out, err = cli(capsys, "bounces", folder, "--job", job)

    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("matched: user2@example.com bounced 5.1.1 (")
    assert "by VERP: run " in first
    assert first.endswith(", recipient 2)")
    assert (tmp_path / SUPPRESSED).read_text() == HEADER + "user2@example.com\n"


def test_a_bounce_of_a_cc_copy_suppresses_the_copy_not_the_recipient(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    (tmp_path / SUPPRESSED).write_text(HEADER)
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(2),
        attachments=None,
        suppress=[SUPPRESSED],
        cc="Manager <manager@example.com>",
    )
    code, _, err = cli(capsys, "run", job)
    assert code == 0, err
    first = server.messages[0]
    assert first.rcpt_tos == ["user1@example.com", "manager@example.com"]
    notification = bounce(
        message_id=str(parse(first.data)["Message-ID"]), recipient="manager@example.com"
    )
    folder = maildir_of(tmp_path / "Maildir", [notification])

    code, out, err = cli(capsys, "bounces", folder, "--job", job)

    assert code == 0, err
    assert out.startswith("matched: manager@example.com bounced 5.1.1 (")
    assert "by Message-ID: run " in out
    assert (tmp_path / SUPPRESSED).read_text() == HEADER + "manager@example.com\n"
