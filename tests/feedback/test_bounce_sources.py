"""What `batchmail bounces` says when its source or its job is not right, and what it makes of
messages that are not notifications at all."""

from __future__ import annotations

import itertools
import mailbox
from pathlib import Path

import pytest
from dovecot import PASSWORD, Dovecot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtpserver import SmtpServerFactory
from support import cli, make_job

from batchmail.feedback.mailboxes import maildir_messages, mbox_messages

SUPPRESSED = "suppressed.txt"
LISTED = "# nobody yet\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SSL_CERT_FILE", "BATCHMAIL_STATE_DIR", "IMAP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def job(tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]) -> Path:
    """A job sent once, so that its journal knows its recipients."""
    (tmp_path / SUPPRESSED).write_text(LISTED)
    path = make_job(tmp_path, smtp_server().port, attachments=None, suppress=[SUPPRESSED])
    code, _, err = cli(capsys, "run", path)
    assert code == 0, err
    return path


def one_line_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_job_without_suppress_is_an_error_naming_the_job_file_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_job(tmp_path)
    (tmp_path / "Maildir").mkdir()

    code, out, err = cli(capsys, "bounces", "Maildir", "--job", path)

    assert code == 2
    assert out == ""
    assert one_line_error(err).startswith("job.yaml: suppress: ")


def test_a_job_never_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_job(tmp_path, suppress=[SUPPRESSED])
    mailbox.Maildir(tmp_path / "Maildir", create=True)

    code, _, err = cli(capsys, "bounces", "Maildir", "--job", path)

    assert code == 2
    assert "no journal in" in one_line_error(err)


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("missing", "missing: no such Maildir folder or mbox file"),
        ("notmaildir", "notmaildir: not a Maildir folder (it has no new/ and cur/)"),
        ("imap://u@127.0.0.1/INBOX", "an IMAP source is imaps://"),
        ("imaps://127.0.0.1/INBOX", "an IMAP source is imaps://USER@HOST:PORT/FOLDER"),
        ("imaps://u@127.0.0.1:1/INBOX", "needs --password-env NAME"),
    ],
)
def test_a_source_that_is_not_there_is_one_line_and_exit_2(
    job: Path, source: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (job.parent / "notmaildir").mkdir()

    code, out, err = cli(capsys, "bounces", source, "--job", job)

    assert code == 2
    assert out == ""
    assert said in one_line_error(err)


def test_an_imap_folder_that_does_not_exist_is_exit_2(
    job: Path,
    dovecot: Dovecot,
    trusted_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD)
    url = dovecot.url.replace("/INBOX", "/Nowhere")

    code, _, err = cli(capsys, "bounces", url, "--job", job, "--password-env", "IMAP_PASSWORD")

    assert code == 2
    assert "no such folder" in one_line_error(err)


def test_a_wrong_imap_password_is_exit_3_and_never_shown(
    job: Path,
    dovecot: Dovecot,
    trusted_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD + "-wrong")
    args = ("bounces", dovecot.url, "--job", job, "--password-env", "IMAP_PASSWORD")

    code, out, err = cli(capsys, *args)

    assert code == 3
    assert "login as bounces@example.com failed" in one_line_error(err)
    assert PASSWORD not in out + err


def test_an_untrusted_imap_certificate_is_exit_3(
    job: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD)
    args = ("bounces", dovecot.url, "--job", job, "--password-env", "IMAP_PASSWORD")

    code, out, err = cli(capsys, *args)

    assert code == 3
    assert "certificate not trusted" in one_line_error(err)
    assert PASSWORD not in out + err


def test_no_imap_server_is_exit_3(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD)
    url = "imaps://u@127.0.0.1:1/INBOX"

    code, _, err = cli(capsys, "bounces", url, "--job", job, "--password-env", "IMAP_PASSWORD")

    assert code == 3
    assert "cannot connect" in one_line_error(err)


_folders = itertools.count()
_header_names = st.sampled_from(
    ["Subject", "Content-Type", "Message-ID", "To", "Delivered-To", "References", "X-Any"]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(st.binary(max_size=600), max_size=3),
    headed=st.lists(
        st.tuples(st.lists(st.tuples(_header_names, st.text(max_size=60)), max_size=5), st.text()),
        max_size=3,
    ),
)
def test_random_bytes_and_unicode_headers_in_a_maildir_or_mbox_never_crash_bounces(
    job: Path,
    capsys: pytest.CaptureFixture[str],
    raw: list[bytes],
    headed: list[tuple[list[tuple[str, str]], str]],
) -> None:
    number = next(_folders)
    folder = job.parent / f"Maildir{number}"
    box = mailbox.Maildir(folder, create=True)
    texts = [
        "".join(f"{name}: {value}\n" for name, value in fields) + "\n" + body
        for fields, body in headed
    ]
    messages = raw + [t.encode("utf-8", "surrogatepass") for t in texts]
    mbox = mailbox.mbox(job.parent / f"mbox{number}")
    for data in messages:
        box.add(data)
        mbox.add(data)
    mbox.close()

    for source in (folder, job.parent / f"mbox{number}"):
        code, out, err = cli(capsys, "bounces", source, "--job", job)

        assert code == 0, err
        lines = out.splitlines()
        assert lines[-1].startswith(f"bounces: {len(messages)} messages: 0 bounced")
        assert all(line.startswith("not matched: ") for line in lines[:-1])
        assert len(lines) == len(messages) + 1
    assert (job.parent / SUPPRESSED).read_text() == LISTED


def test_messages_are_read_in_the_order_they_arrived(tmp_path: Path) -> None:
    """Maildir names count microseconds without padding and mbox keys are numbers: neither
    sorts as text."""
    folder = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True)
    names = ["100.M99P1Q1.host", "100.M100000P1Q2.host", "101.M5P1Q3.host"]
    for index, name in enumerate(names):
        (folder / "new" / name).write_bytes(f"Subject: {index}\n\nbody\n".encode())
    box = mailbox.mbox(tmp_path / "mbox")
    for index in range(12):
        box.add(f"Subject: {index}\n\nbody\n".encode())
    box.close()

    maildir_order = [m.data.split(b"\n")[0] for m in maildir_messages(folder)]
    mbox_order = [m.data.split(b"\n")[0] for m in mbox_messages(tmp_path / "mbox")]

    assert maildir_order == [f"Subject: {i}".encode() for i in range(3)]
    assert mbox_order == [f"Subject: {i}".encode() for i in range(12)]
