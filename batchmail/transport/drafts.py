"""Drafts: a built message appended to a folder of an IMAP mailbox over verified TLS, flagged
\\Draft and \\Seen, for a person to review and send (RFC 3501 6.3.11 APPEND); or kept in memory.
Nothing here speaks SMTP."""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
import time
from typing import Protocol
from urllib.parse import unquote, urlsplit

from msgspec import Struct

from batchmail.errors import ConnectFailure, invalid

IMAPS_PORT = 993
IMAP_TIMEOUT = 30.0
DRAFT_FLAGS = r"(\Draft \Seen)"
MAILBOX_SHAPE = "imaps://USER@HOST:PORT/FOLDER"
# RFC 4315 (UIDPLUS): the server names the appended message's UID in its reply.
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class DraftsFolder(Struct, frozen=True):
    user: str
    host: str
    port: int
    folder: str

    @property
    def shown(self) -> str:
        return f"imaps://{self.user}@{self.host}:{self.port}/{self.folder}"


class DraftStore(Protocol):
    def append(self, data: bytes) -> str | None:
        """Store the message as a draft; its UID when the store tells it."""
        ...


def drafts_folder(url: str) -> DraftsFolder:
    """`imaps://USER@HOST:PORT/FOLDER` as a record; a one-line InvalidJobError otherwise, which
    never repeats a password written into the URL."""
    where = "drafts mailbox"
    parts = urlsplit(url.strip())
    if parts.scheme != "imaps":
        raise invalid(where, f"the URL must be {MAILBOX_SHAPE} (TLS only)")
    if parts.password is not None:
        raise invalid(where, "the URL holds a password: give it apart, never in the URL")
    try:
        port = parts.port or IMAPS_PORT
    except ValueError:
        raise invalid(where, f"the port is not a number: use {MAILBOX_SHAPE}") from None
    if not parts.username or not parts.hostname:
        raise invalid(where, f"the URL must name the user and the host: {MAILBOX_SHAPE}")
    folder = unquote(parts.path.lstrip("/"))
    if not folder:
        raise invalid(where, f"the URL names no folder: {MAILBOX_SHAPE}, e.g. /Drafts")
    if not folder.isascii() or not folder.isprintable():
        raise invalid(where, "the folder's name must be printable ASCII")
    return DraftsFolder(unquote(parts.username), parts.hostname, port, folder)


class ImapDrafts:
    """One IMAP session per draft: connect over TLS verified with the system's CAs (honouring
    SSL_CERT_FILE), log in, APPEND, log out."""

    def __init__(self, folder: DraftsFolder, password: str, timeout: float = IMAP_TIMEOUT):
        self.folder = folder
        self._password = password
        self.timeout = timeout

    def append(self, data: bytes) -> str | None:
        session = self._login()
        try:
            return self._append(session, data)
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):  # gone either way
                session.logout()

    def _login(self) -> imaplib.IMAP4_SSL:
        where = f"{self.folder.host}:{self.folder.port}"
        try:
            session = imaplib.IMAP4_SSL(
                self.folder.host,
                self.folder.port,
                ssl_context=ssl.create_default_context(),
                timeout=self.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailure(
                f"{where}: certificate not trusted: {exc.verify_message}"
            ) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConnectFailure(f"{where}: cannot connect: {self._said(exc)}") from None
        try:
            session.login(self.folder.user, self._password)
        except (OSError, imaplib.IMAP4.error) as exc:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                session.logout()
            raise ConnectFailure(
                f"{where}: login as {self.folder.user} failed: {self._said(exc)}"
            ) from None
        return session

    def _append(self, session: imaplib.IMAP4_SSL, data: bytes) -> str | None:
        quoted = '"' + self.folder.folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        try:
            status, reply = session.append(
                quoted, DRAFT_FLAGS, imaplib.Time2Internaldate(time.time()), data
            )
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConnectFailure(f"{self.folder.shown}: APPEND failed: {self._said(exc)}") from None
        said = b" ".join(part for part in reply if isinstance(part, bytes))
        if status != "OK":
            if b"TRYCREATE" in said:  # RFC 3501 6.3.11: the folder does not exist
                raise invalid(self.folder.shown, f"no such folder: {self._said(said)}")
            raise ConnectFailure(f"{self.folder.shown}: APPEND refused: {self._said(said)}")
        found = _APPENDUID.search(said)
        return found.group(1).decode() if found else None

    def _said(self, what: object) -> str:
        """A server's or the library's words on one line, never holding the password."""
        text = what.decode("utf-8", "replace") if isinstance(what, bytes) else str(what)
        text = " ".join(text.split())[:300]
        return text.replace(self._password, "***") if self._password else text


class MemoryDrafts:
    """Every draft kept in a list, for tests and library users."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def append(self, data: bytes) -> str | None:
        self.messages.append(data)
        return str(len(self.messages))
