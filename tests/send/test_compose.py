"""The validation pass keeps what it built; sending it gives the bytes a fresh build gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from smtpserver import SmtpServerFactory
from support import make_job, parse, recipients, run_cli

from batchmail.build.compose import Composer, validate
from batchmail.build.mime import date_header
from batchmail.load.job import load_job
from batchmail.send.kept import KEPT_BYTES, KeptMessages


@pytest.mark.parametrize("room", [KEPT_BYTES, 0])
def test_kept_and_rebuilt_messages_are_the_same_bytes(tmp_path: Path, room: int) -> None:
    people = [*recipients(3), {"email": "zoë@example.com", "name": "Zoë Ünicode", "team": "ü"}]
    subject = "Date: Thu, 01 Jan 1970 00:00:00 +0000 {{ name }} " + "long words " * 12
    composer = Composer(load_job(make_job(tmp_path, 25, recipients=people, subject=subject)), print)
    kept = KeptMessages(composer, room)
    validate(composer, kept.keep)
    date = date_header(1_790_000_000.0)
    for recipient in composer.recipients([], second_pass=True):
        assert (kept.recipient(recipient.seq) is not None) == bool(room)  # the path under test
        message_id = composer.message_id("20261124T011333Z-6cf3cc", recipient.seq)
        sent = kept.message_bytes(recipient, message_id=message_id, date=date)
        fresh = composer.message_bytes(recipient, message_id=message_id, date=date)
        assert sent == fresh
        assert f"\r\nMessage-ID: {message_id}\r\n".encode() in sent
        assert f"\r\nDate: {date}\r\n".encode() in sent
        # the subject's look-alike of the stand-in Date is left alone
        assert parse(sent)["Subject"].startswith("Date: Thu, 01 Jan 1970 00:00:00 +0000 ")


def test_a_run_sends_kept_messages_then_streams_the_rest(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the room for kept messages, recipients come from a second pass over the data:
    everyone still gets their own message, once, in order. Each message carries 2.5 MiB, so
    the room (8 MiB) holds the first two."""
    server = smtp_server()
    payload = os.urandom(5 * 1024 * 1024 // 2)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "big.bin").write_bytes(payload)
    job = make_job(tmp_path, server.port, recipients=recipients(5), attachments=["files/big.bin"])
    assert 2 * len(payload) < KEPT_BYTES < 3 * len(payload) * 4 // 3  # base64: 4/3 as large
    assert run_cli(capsys, "run", job).code == 0

    assert all(parse(m.data).get_payload()[-1].get_content() == payload for m in server.messages)
    got = [(m.rcpt_tos[0], parse(m.data)["To"]) for m in server.messages]
    assert got == [(f"user{i}@example.com", f"User {i} <user{i}@example.com>") for i in range(1, 6)]
