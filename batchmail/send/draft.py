"""One message outside any job saved as a draft instead of sent: built exactly as `send_one`
builds it, then appended to a mailbox's drafts folder. No SMTP connection."""

from __future__ import annotations

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.send.single import Attached, OneMessage, build_one
from batchmail.transport.drafts import DraftStore, ImapDrafts, drafts_folder


class SavedDraft(Struct, frozen=True):
    folder: str  # imaps://USER@HOST:PORT/FOLDER, no password
    message_id: str
    size: int
    attachments: tuple[Attached, ...]
    uid: str | None  # the draft's UID in the folder, when the server says it (UIDPLUS)


def save_draft(
    message: OneMessage, mailbox: str, password: str, store: DraftStore | None = None
) -> SavedDraft:
    """InvalidJobError when the mailbox URL or the message is wrong, ConnectFailure when the
    server cannot be reached, trusted or logged in to: nothing was stored either way."""
    folder = drafts_folder(mailbox)
    if message.bcc:
        # A draft carries its recipients in its headers, and Bcc is never a header here.
        raise invalid("bcc", "a draft cannot keep blind copies: add them when sending it")
    built = build_one(message)
    uid = (store or ImapDrafts(folder, password)).append(built.data)
    return SavedDraft(folder.shown, built.message_id, len(built.data), built.attachments, uid)
