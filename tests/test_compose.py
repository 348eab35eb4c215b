"""The validation pass keeps what it built; sending it gives the bytes a fresh build gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import SmtpServerFactory
from support import make_job, parse, recipients, run_cli

from batchmail import api
from batchmail.build import compose
from batchmail.build.compose import Composer, validate
from batchmail.build.mime import date_header
from batchmail.load.job import load_job


def _composer(folder: Path, keep_bytes: int) -> Composer:
    people = [*recipients(3), {"email": "zoë@example.com", "name": "Zoë Ünicode", "team": "ü"}]
    subject = "Date: Thu, 01 Jan 1970 00:00:00 +0000 {{ name }} " + "long words " * 12
    job = load_job(make_job(folder, 25, recipients=people, subject=subject))
    composer = Composer(job, print, keep_bytes=keep_bytes)
    validate(composer)
    return composer


@pytest.mark.parametrize("kept_bytes", [compose.KEPT_BYTES, 0])
def test_kept_and_rebuilt_messages_are_the_same_bytes(tmp_path: Path, kept_bytes: int) -> None:
    composer = _composer(tmp_path, kept_bytes)
    assert len(composer._kept) == (4 if kept_bytes else 0)  # the path under test is taken
    date = date_header(1_790_000_000.0)
    for recipient in composer.recipients([], second_pass=True):
        message_id = composer.message_id("20261124T011333Z-6cf3cc", recipient.seq)
        sent = composer.message_bytes(recipient, message_id=message_id, date=date)
        fresh = composer.build(composer.compose(recipient), message_id=message_id, date=date)
        assert sent == fresh
        assert f"\r\nMessage-ID: {message_id}\r\n".encode() in sent
        assert f"\r\nDate: {date}\r\n".encode() in sent
        # the subject's look-alike of the stand-in Date is left alone
        assert parse(sent)["Subject"].startswith("Date: Thu, 01 Jan 1970 00:00:00 +0000 ")


def test_a_run_sends_kept_messages_then_streams_the_rest(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the room for kept messages, recipients come from a second pass over the data:
    everyone still gets their own message, once, in order."""
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(7))
    composer = Composer(load_job(job), print, keep_bytes=compose.KEPT_BYTES)
    validate(composer)
    room = sum(len(data) + compose._KEPT_RECIPIENT for _, data in list(composer._kept.values())[:3])
    monkeypatch.setattr(api, "KEPT_BYTES", room)  # the first three are kept, four are not
    assert run_cli(capsys, "run", job).code == 0

    got = [(m.rcpt_tos[0], parse(m.data)["To"]) for m in server.messages]
    assert got == [(f"user{i}@example.com", f"User {i} <user{i}@example.com>") for i in range(1, 8)]
