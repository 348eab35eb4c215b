"""`api.save_draft`: the message `send_one` would send, stored as a draft; here in memory (the
IMAP folder's own tests are in tests/transport/test_drafts.py and tests/agents/)."""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import PDF, parse

from batchmail import api
from batchmail.errors import InvalidJobError
from batchmail.load.addresses import parse_mailbox
from batchmail.load.settings import SmtpSettings
from batchmail.transport.drafts import MemoryDrafts
from batchmail.transport.memory import MemoryTransport

MAILBOX = "imaps://me@127.0.0.1:9993/Drafts"
SENDER = parse_mailbox("Agent Bot <agent@example.org>")
TO = parse_mailbox("Bob <bob@example.com>")
UNUSED_SMTP = SmtpSettings("127.0.0.1", 1, "none", timeout=1)  # a MemoryTransport sends instead
_VARYING = re.compile(rb"^(Date|Message-ID): .*\r?\n", re.MULTILINE)


def test_the_draft_is_the_message_send_one_would_send(tmp_path: Path) -> None:
    (tmp_path / "r.pdf").write_bytes(PDF)
    files = (api.FileToAttach(tmp_path / "r.pdf", "report.pdf"),)
    cc = (parse_mailbox("Ann <ann@example.com>"),)
    message = api.OneMessage(SENDER, TO, "Numbers", "Hello\n", "<p>Hello</p>", files, cc)
    store = MemoryDrafts()
    saved = api.save_draft(message, MAILBOX, "unused", store)
    transport = MemoryTransport()
    sent = api.send_one(message, UNUSED_SMTP, {}, transport)
    ((kept,), (draft,)) = transport.outbox, store.messages
    assert _VARYING.sub(b"", draft) == _VARYING.sub(b"", kept.data)
    assert parse(draft)["Message-ID"] == saved.message_id != sent.message_id
    assert saved.folder == MAILBOX
    assert saved.size == len(draft)
    assert saved.uid == "1"
    assert saved.attachments == sent.attachments


def test_blind_copies_are_refused_rather_than_lost() -> None:
    bcc = (parse_mailbox("hidden@example.com"),)
    message = api.OneMessage(SENDER, TO, "S", "B\n", bcc=bcc)
    store = MemoryDrafts()
    with pytest.raises(InvalidJobError, match="cannot keep blind copies"):
        api.save_draft(message, MAILBOX, "unused", store)
    assert store.messages == []


TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(subject=TEXT.filter(lambda s: s.strip() == s), body=st.text(max_size=300))
def test_any_unicode_subject_and_body_make_a_draft_that_parses_back(
    subject: str, body: str
) -> None:
    store = MemoryDrafts()
    api.save_draft(api.OneMessage(SENDER, TO, subject, body), MAILBOX, "unused", store)
    (draft,) = store.messages
    message = parse(draft)
    assert not message.defects
    assert str(make_header(decode_header(message["Subject"]))) == subject
    text = message.get_body(("plain",)).get_content()
    assert _lines(text) == _lines(body)


def _lines(text: str) -> list[str]:
    """The text's lines, as any line ending (CR, LF, CRLF) ends them in a message."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n")
