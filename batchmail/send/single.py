"""One message outside any job: built by the code that builds a job's messages, and sent over
the same SMTP transport with credentials read the way a job reads them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct

from batchmail.build.message_fields import copies_of
from batchmail.build.mime import (
    Content,
    HeaderValueError,
    MessageBuilder,
    Part,
    attachment_part,
    date_header,
    detect_type,
)
from batchmail.errors import invalid
from batchmail.load.addresses import Mailbox
from batchmail.load.settings import DEFAULT_MAX_MESSAGE_BYTES, SmtpSettings
from batchmail.state.states import DeliveryState
from batchmail.transport.contract import Envelope, Route, Transport
from batchmail.transport.oauth2 import credentials_for
from batchmail.transport.smtp import SmtpTransport


class FileToAttach(Struct, frozen=True):
    path: Path
    name: str  # the file name the recipient sees


class OneMessage(Struct, frozen=True):
    sender: Mailbox
    to: Mailbox
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[FileToAttach, ...] = ()
    cc: tuple[Mailbox, ...] = ()  # in the Cc header and the envelope
    bcc: tuple[Mailbox, ...] = ()  # in the envelope only


class Attached(Struct, frozen=True):
    name: str
    content_type: str
    size: int


class SentOne(Struct, frozen=True):
    """What became of the message: `state` as a job's delivery states say it."""

    state: DeliveryState
    code: int | None
    response: str
    message_id: str
    attachments: tuple[Attached, ...]

    @property
    def reached_the_server(self) -> bool:
        """Whether the server may have the message: it answered the transaction, or the
        content went out and no answer came. False when the session ended before any command
        of it was answered, or the server lacks SMTPUTF8 the message needs."""
        return self.code is not None or self.state in (DeliveryState.SENT, DeliveryState.UNKNOWN)


def send_one(
    message: OneMessage,
    smtp: SmtpSettings,
    environ: Mapping[str, str],
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    transport: Transport | None = None,
) -> SentOne:
    """Build and send one message; InvalidJobError (nothing sent) when it cannot be built,
    ConnectFailure when no session could be opened. `transport`: instead of the SMTP server."""
    built = build_one(message, max_bytes)
    copies = copies_of(message.to, message.cc, message.bcc)
    route = Route.between(0, message.sender, message.to, copies)
    if transport is None:
        credentials = credentials_for(smtp, environ)
        if credentials is not None:
            credentials.prepare()
        transport = SmtpTransport(smtp, credentials)
    try:
        outcome = transport.send(Envelope(route, built.data))
    finally:
        transport.close()
    return SentOne(
        DeliveryState(outcome.state),
        outcome.code,
        outcome.response,
        built.message_id,
        built.attachments,
    )


class BuiltOne(Struct, frozen=True):
    data: bytes
    message_id: str
    attachments: tuple[Attached, ...]


def build_one(message: OneMessage, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> BuiltOne:
    """The message's bytes, as a job's messages are built; InvalidJobError when it cannot be."""
    parts = [_part(file) for file in message.attachments]
    content = Content(message.to, message.subject, message.text, message.html, parts, cc=message.cc)
    message_id = _message_id(message.sender)
    data = _build(message.sender, content, message_id, max_bytes)
    attached = tuple(Attached(p.filename, p.content_type, p.size) for p in parts)
    return BuiltOne(data, message_id, attached)


def _message_id(sender: Mailbox) -> str:
    return f"<{uuid.uuid4().hex}.one@{sender.domain_key}>"


def _build(sender: Mailbox, content: Content, message_id: str, max_bytes: int) -> bytes:
    try:
        data = MessageBuilder(sender).build(
            content, message_id=message_id, date=date_header(time.time())
        )
    except HeaderValueError as exc:
        raise invalid("", str(exc), exc.field) from None
    if len(data) > max_bytes:
        raise invalid("", f"the message is {len(data):,} bytes, over {max_bytes:,}")
    return data


def _part(file: FileToAttach) -> Part:
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise invalid("", f"cannot read the attachment {file.name!r}: {exc.strerror}") from None
    try:
        return attachment_part(file.name, data, detect_type(data, file.name))
    except HeaderValueError as exc:
        raise invalid("", f"attachment file name {exc}", "attachments") from None
