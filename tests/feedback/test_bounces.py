"""`batchmail bounces` after a real run: notifications read from a Maildir folder, an mbox file
and a real IMAP server (Dovecot), matched to the journal, suppressed in the job's file."""

from __future__ import annotations

import mailbox
import sqlite3
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from dovecot import PASSWORD, Dovecot
from samples import abuse_report, bounce, delay, ordinary
from smtpserver import SmtpServer, SmtpServerFactory
from support import cli, make_job, parse, recipients, report_of

SUPPRESSED = "lists/suppressed.txt"
HEADER = "# unsubscribed, bounced or complaining\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SSL_CERT_FILE", "BATCHMAIL_STATE_DIR", "IMAP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@dataclass
class SentJob:
    path: Path
    server: SmtpServer
    message_ids: dict[str, str]  # recipient -> Message-ID as received

    @property
    def suppressed(self) -> Path:
        return self.path.parent / SUPPRESSED

    def notifications(self) -> list[bytes]:
        """A 5.1.1 bounce of user1's message, a 4.4.1 delay of user2's, an abuse report on
        user3's, and an ordinary reply."""
        ids = self.message_ids
        return [
            bounce(message_id=ids["user1@example.com"], recipient="user1@example.com"),
            delay(message_id=ids["user2@example.com"], recipient="user2@example.com"),
            abuse_report(message_id=ids["user3@example.com"], recipient="user3@example.com"),
            ordinary(),
        ]

    def feedback_rows(self) -> list[tuple[str, str, str, int]]:
        db = sqlite3.connect(self.path.parent / ".batchmail" / "journal.sqlite3")
        try:
            return db.execute(
                "SELECT address, kind, status, seq FROM feedback ORDER BY seq"
            ).fetchall()
        finally:
            db.close()


@pytest.fixture
def sent_job(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> SentJob:
    server = smtp_server()
    (tmp_path / "lists").mkdir()
    (tmp_path / SUPPRESSED).write_text(HEADER)
    job = make_job(
        tmp_path, server.port, recipients=recipients(4), attachments=None, suppress=[SUPPRESSED]
    )
    code, _, err = cli(capsys, "run", job)
    assert code == 0, err
    ids = {m.rcpt_tos[0]: str(parse(m.data)["Message-ID"]) for m in server.messages}
    assert len(ids) == 4
    return SentJob(job, server, ids)


def maildir_of(folder: Path, messages: list[bytes]) -> Path:
    """A Maildir folder: the first message read already (in cur/), the others new."""
    box = mailbox.Maildir(folder, create=True)
    for index, data in enumerate(messages):
        message = mailbox.MaildirMessage(data)
        if index == 0:
            message.set_subdir("cur")
            message.add_flag("S")
        box.add(message)
    return folder


def mbox_of(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path, create=True)
    for data in messages:
        box.add(data)
    box.flush()
    box.close()
    return path


@pytest.fixture(params=["maildir", "mbox", "imaps"])
def source(
    request: pytest.FixtureRequest, sent_job: SentJob, tmp_path: Path
) -> tuple[str, list[str]]:
    """A source holding the four notifications, and the options to read it with."""
    messages = sent_job.notifications()
    if request.param == "maildir":
        return str(maildir_of(tmp_path / "Maildir", messages)), []
    if request.param == "mbox":
        return str(mbox_of(tmp_path / "bounces.mbox", messages)), []
    server: Dovecot = request.getfixturevalue("dovecot")
    request.getfixturevalue("trusted_ca")
    request.getfixturevalue("monkeypatch").setenv("IMAP_PASSWORD", PASSWORD)
    server.append(request.getfixturevalue("client_context"), messages)
    return server.url, ["--password-env", "IMAP_PASSWORD"]


def test_bounces_suppress_exactly_the_bounced_and_complaining_recipients_once(
    sent_job: SentJob, source: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    where, options = source
    code, out, err = cli(capsys, "bounces", where, "--job", sent_job.path, *options)

    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 5
    assert sum(line.startswith("matched: user1@example.com bounced 5.1.1") for line in lines) == 1
    assert sum(line.startswith("matched: user2@example.com delayed 4.4.1") for line in lines) == 1
    assert (
        sum(line.startswith("matched: user3@example.com complained abuse") for line in lines) == 1
    )
    [unmatched] = [line for line in lines if line.startswith("not matched:")]
    assert "not a delivery report or abuse report (subject: 'Re: Report for you')" in unmatched
    assert lines[-1] == (
        "bounces: 4 messages: 1 bounced, 1 complained, 1 delayed, 1 not matched; "
        f"2 added to {SUPPRESSED}"
    )
    assert sent_job.suppressed.read_text() == HEADER + "user1@example.com\nuser3@example.com\n"
    assert sent_job.feedback_rows() == [
        ("user1@example.com", "bounced", "5.1.1", 1),
        ("user2@example.com", "delayed", "4.4.1", 2),
        ("user3@example.com", "complained", "abuse", 3),
    ]
    assert PASSWORD not in out + err

    code, again, err = cli(capsys, "bounces", where, "--job", sent_job.path, *options)

    assert code == 0, err
    assert sum(line.startswith("already recorded: ") for line in again.splitlines()) == 3
    assert again.splitlines()[-1].endswith("; nothing new: all recorded before")
    assert sent_job.suppressed.read_text() == HEADER + "user1@example.com\nuser3@example.com\n"
    assert len(sent_job.feedback_rows()) == 3


def test_the_next_run_does_not_mail_the_recipients_bounces_suppressed(
    sent_job: SentJob, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = maildir_of(tmp_path / "Maildir", sent_job.notifications())
    code, _, err = cli(capsys, "bounces", folder, "--job", sent_job.path)
    assert code == 0, err
    sent_job.server.messages.clear()

    code, out, err = cli(capsys, "run", sent_job.path, "--new-run", "--report", "report.json")

    assert code == 0, err
    assert sorted(m.rcpt_tos[0] for m in sent_job.server.messages) == [
        "user2@example.com",
        "user4@example.com",
    ]
    statuses = {r["email"]: r["status"] for r in report_of(tmp_path / "report.json")["recipients"]}
    assert statuses == {
        "user1@example.com": "suppressed",
        "user2@example.com": "sent",
        "user3@example.com": "suppressed",
        "user4@example.com": "sent",
    }
    assert "2 suppressed" in out


def test_the_imap_folder_is_read_only_and_its_messages_stay_unseen(
    sent_job: SentJob,
    dovecot: Dovecot,
    trusted_ca: Path,
    client_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dovecot.append(client_context, sent_job.notifications(), folder="Bounces")
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD)
    url = dovecot.url.replace("/INBOX", "/Bounces")

    code, out, err = cli(
        capsys, "bounces", url, "--job", sent_job.path, "--password-env", "IMAP_PASSWORD"
    )

    assert code == 0, err
    assert "2 added to" in out
    assert dovecot.unseen(client_context, "Bounces") == 4


@pytest.mark.parametrize(
    ("name", "holds", "after"),
    [
        (SUPPRESSED, None, "user1@example.com\nuser3@example.com\n"),
        (SUPPRESSED, "USER1@Example.COM", "USER1@Example.COM\nuser3@example.com\n"),
        (SUPPRESSED, "@EXAMPLE.com\n", "@EXAMPLE.com\n"),
        (
            "lists/suppressed.csv",
            "name,email\nAnn,ann@example.org\n",
            "name,email\nAnn,ann@example.org\n,user1@example.com\n,user3@example.com\n",
        ),
    ],
)
def test_the_suppression_file_gets_only_addresses_it_does_not_cover_yet(
    sent_job: SentJob,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    holds: str | None,
    after: str,
) -> None:
    make_job(
        tmp_path,
        sent_job.server.port,
        recipients=recipients(4),
        attachments=None,
        suppress=[name, SUPPRESSED],
    )
    path = tmp_path / name
    path.unlink(missing_ok=True)
    if holds is not None:
        path.write_text(holds)
    folder = maildir_of(tmp_path / "Maildir", sent_job.notifications())

    code, out, err = cli(capsys, "bounces", folder, "--job", sent_job.path)

    assert code == 0, err
    assert path.read_text() == after
    added = after.count("user")
    summary = out.splitlines()[-1]
    assert summary.endswith(f"{added} added to {name}" if added else f"nothing added to {name}")


def test_reports_of_messages_the_journal_does_not_know_are_not_matched(
    sent_job: SentJob, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = sent_job.message_ids["user1@example.com"]
    run_id, seq = ours[1:].split("@")[0].rsplit(".", 1)
    foreign = [
        ours.replace("@example.com>", "@example.org>"),  # another sender's domain
        f"<20200101T000000Z-abcdef.{seq}@example.com>",  # a run the journal does not have
        f"<{run_id}.99@example.com>",  # a recipient the run does not have
    ]
    messages = [
        bounce(message_id=mid, recipient="user1@example.com", notice_id=f"<n{i}@mx.example.net>")
        for i, mid in enumerate(foreign)
    ]
    messages.append(bounce(message_id=ours, recipient="user1@example.com", returned=False))
    folder = maildir_of(tmp_path / "Maildir", messages)

    code, out, err = cli(capsys, "bounces", folder, "--job", sent_job.path)

    assert code == 0, err
    lines = out.splitlines()
    assert (
        sum("a report (bounced 5.1.1) of no message in the job's journal" in x for x in lines) == 4
    )
    assert lines[-1].startswith("bounces: 4 messages: 0 bounced, 0 complained, 0 delayed, 4 not")
    assert sent_job.suppressed.read_text() == HEADER


def test_bounces_match_the_messages_of_every_shard_of_the_job(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    (tmp_path / "lists").mkdir()
    (tmp_path / SUPPRESSED).write_text(HEADER)
    job = make_job(
        tmp_path, server.port, recipients=recipients(4), attachments=None, suppress=[SUPPRESSED]
    )
    for shard in ("1/2", "2/2"):
        code, _, err = cli(capsys, "run", job, "--shard", shard)
        assert code == 0, err
    ids = {m.rcpt_tos[0]: str(parse(m.data)["Message-ID"]) for m in server.messages}
    folder = maildir_of(
        tmp_path / "Maildir",
        [
            bounce(message_id=ids["user1@example.com"], recipient="user1@example.com"),
            bounce(message_id=ids["user2@example.com"], recipient="user2@example.com"),
        ],
    )

    code, out, err = cli(capsys, "bounces", folder, "--job", job)

    assert code == 0, err
    assert (
        sum(line.startswith("matched: user1@example.com bounced") for line in out.splitlines()) == 1
    )
    assert (
        sum(line.startswith("matched: user2@example.com bounced") for line in out.splitlines()) == 1
    )
    assert (tmp_path / SUPPRESSED).read_text() == HEADER + "user1@example.com\nuser2@example.com\n"
