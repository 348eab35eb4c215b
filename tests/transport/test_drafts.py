"""The drafts folder: its URL, and IMAP APPEND against a private Dovecot on 127.0.0.1 over TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from dovecot import PASSWORD, USER, Dovecot, running_dovecot

from batchmail.errors import ConnectFailure, InvalidJobError
from batchmail.transport.drafts import DraftsFolder, ImapDrafts, drafts_folder

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Kept\r\n\r\nHello\r\n"


@pytest.fixture
def dovecot(server_cert: trustme.LeafCert, ca: trustme.CA) -> Iterator[Dovecot]:
    with running_dovecot(server_cert) as server:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        session = server.session(context)
        try:
            session.create("Drafts")
        finally:
            session.logout()
        yield server


@pytest.fixture
def trusted(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))


def test_the_url_gives_user_host_port_and_folder() -> None:
    folder = drafts_folder("imaps://me%40example.com@127.0.0.1:9993/Drafts")
    assert folder == DraftsFolder("me@example.com", "127.0.0.1", 9993, "Drafts")
    assert drafts_folder("imaps://me@[::1]/Work%2FDrafts").port == 993
    assert drafts_folder("imaps://me@[::1]/Work%2FDrafts").folder == "Work/Drafts"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("imap://me@127.0.0.1/Drafts", "TLS only"),
        ("imaps://me:s3cret-word@127.0.0.1/Drafts", "holds a password"),
        ("imaps://127.0.0.1/Drafts", "name the user and the host"),
        ("imaps://me@127.0.0.1:99x/Drafts", "port is not a number"),
        ("imaps://me@127.0.0.1:993", "names no folder"),
        ("imaps://me@127.0.0.1/Entw%C3%BCrfe", "printable ASCII"),
    ],
)
def test_a_wrong_url_is_one_line(url: str, said: str) -> None:
    with pytest.raises(InvalidJobError) as raised:
        drafts_folder(url)
    (line,) = raised.value.lines()
    assert said in line
    assert "s3cret-word" not in line


@pytest.mark.usefixtures("trusted")
def test_append_stores_the_bytes_flagged_and_says_the_uid(dovecot: Dovecot, ca: trustme.CA) -> None:
    folder = drafts_folder(f"imaps://{USER}@127.0.0.1:{dovecot.port}/Drafts")
    uid = ImapDrafts(folder, PASSWORD, timeout=10).append(MESSAGE)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    session = dovecot.session(context)
    try:
        session.select("Drafts", readonly=True)
        _, reply = session.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[])")
    finally:
        session.logout()
    head, data = next(item for item in reply if isinstance(item, tuple))
    assert data == MESSAGE
    assert b"\\Draft" in head
    assert b"\\Seen" in head


def test_an_untrusted_certificate_is_refused(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    folder = drafts_folder(f"imaps://{USER}@127.0.0.1:{dovecot.port}/Drafts")
    with pytest.raises(ConnectFailure, match="certificate not trusted") as raised:
        ImapDrafts(folder, PASSWORD, timeout=10).append(MESSAGE)
    assert PASSWORD not in str(raised.value)


@pytest.mark.usefixtures("trusted")
def test_a_wrong_password_and_a_missing_folder_are_one_line_each(dovecot: Dovecot) -> None:
    url = f"imaps://{USER}@127.0.0.1:{dovecot.port}"
    with pytest.raises(ConnectFailure) as login:
        ImapDrafts(drafts_folder(f"{url}/Drafts"), "not-the-password", timeout=10).append(MESSAGE)
    with pytest.raises(InvalidJobError) as folder:
        ImapDrafts(drafts_folder(f"{url}/Nowhere"), PASSWORD, timeout=10).append(MESSAGE)
    (login_line,) = login.value.lines()
    (folder_line,) = folder.value.lines()
    assert login_line.startswith(f"127.0.0.1:{dovecot.port}: login as {USER} failed")
    assert "not-the-password" not in login_line
    assert folder_line.startswith(f"{url}/Nowhere: no such folder")
    assert PASSWORD not in folder_line
