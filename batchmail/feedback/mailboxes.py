"""Where notifications are read from: a Maildir folder, an mbox file, or an IMAP folder over TLS
(`imaps://USER@HOST:PORT/FOLDER`), each message as its bytes, nothing changed in the source."""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from msgspec import Struct

from batchmail.errors import ConnectFailure, invalid
from batchmail.feedback.notifications import one_line

IMAPS_PORT = 993
IMAP_TIMEOUT = 30.0
_FETCHED_UID = re.compile(rb"UID (\d+)")
_NUMBERS = re.compile(r"(\d+)")


class Stored(Struct, frozen=True):
    """One message of a source: where it is (for what is printed) and its bytes."""

    where: str
    data: bytes


class ImapUrl(Struct, frozen=True):
    user: str
    host: str
    port: int
    folder: str

    @property
    def shown(self) -> str:
        return f"imaps://{self.user}@{self.host}:{self.port}/{self.folder}"


def read_source(
    source: str, password_env: str | None, environ: Mapping[str, str]
) -> Iterator[Stored]:
    """Every message of SOURCE. Raises InvalidJobError (exit 2) for a source that is not
    there, ConnectFailure (exit 3) when the IMAP server cannot be reached or logged in to."""
    if "://" in source:
        url = imap_url(source)
        return imap_messages(url, _password(url, password_env, environ))
    path = Path(source)
    if path.is_dir():
        return maildir_messages(path)
    if path.is_file():
        return mbox_messages(path)
    raise invalid(source, "no such Maildir folder or mbox file")


def maildir_messages(path: Path) -> Iterator[Stored]:
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise invalid(str(path), "not a Maildir folder (it has no new/ and cur/)")
    folder = mailbox.Maildir(path, factory=None, create=False)
    return _stored(folder, lambda key: f"{path}/{key}")


def mbox_messages(path: Path) -> Iterator[Stored]:
    box = mailbox.mbox(path, factory=None, create=False)
    return _stored(box, lambda key: f"{path}: message {int(key) + 1}")


def _stored(box: mailbox.Mailbox[mailbox.Message], where: object) -> Iterator[Stored]:
    def messages() -> Iterator[Stored]:
        try:
            for key in sorted(box.iterkeys(), key=arrival_order):
                yield Stored(where(key), box.get_bytes(key))  # type: ignore[operator]
        finally:
            box.close()

    return messages()


def arrival_order(key: object) -> list[int | str]:
    """A message's key as its numbers and the text between them: mbox keys are numbers, and
    Maildir names (SECONDS.M<microseconds>P<pid>Q<count>.HOST, as MDAs write them) do not pad
    their numbers, so neither sorts in the order the messages arrived as text."""
    return [int(part) if part.isdigit() else part for part in _NUMBERS.split(str(key))]


def imap_url(source: str) -> ImapUrl:
    parts = urlsplit(source)
    if parts.scheme != "imaps":
        raise invalid(source, "an IMAP source is imaps://USER@HOST:PORT/FOLDER (TLS only)")
    try:
        port = parts.port or IMAPS_PORT
    except ValueError:
        raise invalid(source, "the port is not a number") from None
    if not parts.username or not parts.hostname or parts.password is not None:
        raise invalid(
            source,
            "an IMAP source is imaps://USER@HOST:PORT/FOLDER, the password in the variable "
            "named by --password-env",
        )
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if not folder.isascii() or not folder.isprintable():
        raise invalid(source, "the folder's name must be printable ASCII")
    return ImapUrl(unquote(parts.username), parts.hostname, port, folder)


def _password(url: ImapUrl, name: str | None, environ: Mapping[str, str]) -> str:
    if not name:
        raise invalid(url.shown, "an IMAP source needs --password-env NAME")
    password = environ.get(name)
    if not password:
        raise invalid(url.shown, f"the variable {name} (--password-env) is not set")
    return password


def imap_messages(url: ImapUrl, password: str) -> Iterator[Stored]:
    """The folder opened read-only (RFC 3501 6.3.2 EXAMINE) and every message fetched with
    BODY.PEEK[], which leaves it unseen (6.4.5)."""
    session = _login(url, password)
    _examine(session, url)

    def messages() -> Iterator[Stored]:
        try:
            for uid in _uids(session, url):
                yield Stored(f"{url.shown} UID {uid.decode()}", _fetch(session, url, uid))
        finally:
            _logout(session)

    return messages()


def tls_context() -> ssl.SSLContext:
    """Verified TLS as for SMTP: the system's CAs, honouring SSL_CERT_FILE."""
    return ssl.create_default_context()


def _login(url: ImapUrl, password: str) -> imaplib.IMAP4_SSL:
    try:
        session = imaplib.IMAP4_SSL(
            url.host, url.port, ssl_context=tls_context(), timeout=IMAP_TIMEOUT
        )
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailure(
            f"{url.host}:{url.port}: certificate not trusted: {exc.verify_message}"
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ConnectFailure(
            f"{url.host}:{url.port}: cannot connect: {_said(exc, password)}"
        ) from None
    try:
        session.login(url.user, password)
    except (OSError, imaplib.IMAP4.error) as exc:
        _logout(session)
        raise ConnectFailure(
            f"{url.host}:{url.port}: login as {url.user} failed: {_said(exc, password)}"
        ) from None
    return session


def _examine(session: imaplib.IMAP4_SSL, url: ImapUrl) -> None:
    quoted = '"' + url.folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        status, reply = session.select(quoted, readonly=True)
    except (OSError, imaplib.IMAP4.error) as exc:
        _logout(session)
        raise ConnectFailure(f"{url.shown}: {_said(exc)}") from None
    if status != "OK":
        _logout(session)
        raise invalid(url.shown, f"no such folder: {_said(reply)}")


def _uids(session: imaplib.IMAP4_SSL, url: ImapUrl) -> list[bytes]:
    status, reply = _command(session, url, "SEARCH", None, "ALL")
    return reply[0].split() if status == "OK" and reply and isinstance(reply[0], bytes) else []


def _fetch(session: imaplib.IMAP4_SSL, url: ImapUrl, uid: bytes) -> bytes:
    _, reply = _command(session, url, "FETCH", uid.decode(), "(BODY.PEEK[])")
    for item in reply:
        if isinstance(item, tuple) and len(item) == 2 and _FETCHED_UID.search(item[0]):
            return bytes(item[1])
    return b""


def _command(
    session: imaplib.IMAP4_SSL, url: ImapUrl, *args: str | None
) -> tuple[str, list[object]]:
    try:
        status, reply = session.uid(*args)  # type: ignore[arg-type]
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ConnectFailure(f"{url.shown}: {_said(exc)}") from None
    return status, list(reply)


def _logout(session: imaplib.IMAP4_SSL) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):  # gone either way
        session.logout()


def _said(what: object, secret: str = "") -> str:
    """A server's or the library's words, on one line, never holding the password."""
    if isinstance(what, list):
        what = b" ".join(p for p in what if isinstance(p, bytes)).decode("utf-8", "replace")
    text = one_line(what)
    return text.replace(secret, "***") if secret else text
