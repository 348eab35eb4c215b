"""`save_draft` end to end: the SDK's stdio client, the real server, a private Dovecot on
127.0.0.1 over TLS (trustme), and the SMTP server that must hear nothing."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from email.header import decode_header, make_header

import pytest
import trustme
from dovecot import PASSWORD as IMAP_PASSWORD
from dovecot import USER, Dovecot, running_dovecot
from mcpsupport import SENDER, Mcp, Setup, connect
from support import parse

pytestmark = pytest.mark.anyio

SUBJECT = "Draft: résumé ✓"
BODY = "Hello,\nplease look at this before it goes.\n"


@pytest.fixture
def dovecot(server_cert: trustme.LeafCert) -> Iterator[Dovecot]:
    with running_dovecot(server_cert) as server:
        yield server


@pytest.fixture
def context(ca: trustme.CA) -> ssl.SSLContext:
    """For the test's own IMAP sessions."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client


def drafts_env(
    setup: Setup, dovecot: Dovecot, context: ssl.SSLContext, **more: str | None
) -> dict[str, str]:
    session = dovecot.session(context)
    try:
        session.create("Drafts")
    finally:
        session.logout()
    mailbox = {
        "BATCHMAIL_IMAP_URL": f"imaps://{USER}@127.0.0.1:{dovecot.port}/Drafts",
        "BATCHMAIL_IMAP_PASSWORD": IMAP_PASSWORD,
    }
    return setup.server_env(**{**mailbox, **more})


def drafts(dovecot: Dovecot, context: ssl.SSLContext) -> list[tuple[bytes, bytes]]:
    """Every message of Drafts: its FLAGS line and its bytes, read without changing them."""
    session = dovecot.session(context)
    try:
        status, _ = session.select("Drafts", readonly=True)
        assert status == "OK"
        _, found = session.uid("SEARCH", None, "ALL")  # type: ignore[arg-type]
        stored = []
        for uid in found[0].split():
            _, reply = session.uid("FETCH", uid.decode(), "(FLAGS BODY.PEEK[])")
            (head, data), *_ = [item for item in reply if isinstance(item, tuple)]
            stored.append((head, data))
        return stored
    finally:
        session.logout()


def assert_no_imap_password(mcp: Mcp) -> None:
    assert mcp.seen
    assert not any(IMAP_PASSWORD in text for text in mcp.seen)


async def test_save_draft_stores_one_flagged_draft_and_sends_nothing(
    setup: Setup, dovecot: Dovecot, context: ssl.SSLContext
) -> None:
    env = drafts_env(setup, dovecot, context)
    async with connect(env, setup.root) as mcp:
        saved = await mcp.ok(
            "save_draft",
            to="User One <user1@example.com>",
            subject=SUBJECT,
            body=BODY,
            cc=["user2@example.com"],
        )
        assert_no_imap_password(mcp)
    ((flags, data),) = drafts(dovecot, context)
    flagged = re.search(rb"FLAGS \(([^)]*)\)", flags)
    assert flagged is not None
    # \Recent is the server's own, for this session (RFC 3501 2.3.2).
    assert set(flagged.group(1).split()) - {b"\\Recent"} == {b"\\Seen", b"\\Draft"}
    message = parse(data)
    assert str(make_header(decode_header(message["Subject"]))) == SUBJECT
    assert message["To"] == "User One <user1@example.com>"
    assert message["Cc"] == "user2@example.com"
    assert message["From"] == SENDER
    assert message["Message-ID"] == saved["message_id"]
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == BODY
    assert saved["status"] == "saved"
    assert saved["folder"] == f"imaps://{USER}@127.0.0.1:{dovecot.port}/Drafts"
    uid = re.search(rb"UID (\d+)", flags)
    assert uid is not None
    assert saved["uid"] == uid.group(1).decode()
    assert saved["remaining_messages"] == 19
    assert setup.mail_server.messages == []
    assert setup.mail_server.connections == 0


async def test_a_wrong_imap_password_is_one_line_without_it(
    setup: Setup, dovecot: Dovecot, context: ssl.SSLContext
) -> None:
    wrong = "wrong-imap-password-5521"
    env = drafts_env(setup, dovecot, context, BATCHMAIL_IMAP_PASSWORD=wrong)
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("save_draft", to="user1@example.com", subject="S", body="B\n")
        sent = await mcp.ok("send_email", to="user1@example.com", subject="S", body="B\n")
        assert not any(wrong in text for text in mcp.seen)
    assert f"login as {USER} failed" in error
    assert drafts(dovecot, context) == []
    assert sent["remaining_messages"] == 19  # the refused draft took nothing from the cap


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"BATCHMAIL_IMAP_URL": None}, "BATCHMAIL_IMAP_URL is not set"),
        ({"BATCHMAIL_IMAP_PASSWORD": None}, "BATCHMAIL_IMAP_PASSWORD is not set"),
        ({"SSL_CERT_FILE": None}, "certificate not trusted"),
        ({"BATCHMAIL_MCP_MAX_MESSAGES": "0"}, "would exceed the cap"),
        ({"BATCHMAIL_MCP_ALLOW": "@example.org"}, "not in the allowlist"),
        ({"BATCHMAIL_FROM": None}, "save_draft is not configured: BATCHMAIL_FROM is not set"),
    ],
)
async def test_each_refusal_is_one_line_and_stores_nothing(
    setup: Setup,
    dovecot: Dovecot,
    context: ssl.SSLContext,
    settings: dict[str, str | None],
    said: str,
) -> None:
    env = drafts_env(setup, dovecot, context, **settings)
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("save_draft", to="user1@example.com", subject="S", body="B\n")
        assert_no_imap_password(mcp)
    assert said in error
    assert drafts(dovecot, context) == []
    assert setup.mail_server.connections == 0


async def test_a_missing_folder_is_named(
    setup: Setup, dovecot: Dovecot, context: ssl.SSLContext
) -> None:
    url = f"imaps://{USER}@127.0.0.1:{dovecot.port}/Brouillons"
    env = drafts_env(setup, dovecot, context, BATCHMAIL_IMAP_URL=url)
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("save_draft", to="user1@example.com", subject="S", body="B\n")
        assert_no_imap_password(mcp)
    assert error.startswith(f"{url}: no such folder")


async def test_a_password_in_the_url_is_refused_and_not_repeated(setup: Setup) -> None:
    secret = "in-url-Secret-8810"
    env = setup.server_env(
        BATCHMAIL_IMAP_URL=f"imaps://{USER}:{secret}@127.0.0.1:1/Drafts",
        BATCHMAIL_IMAP_PASSWORD=IMAP_PASSWORD,
    )
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("save_draft", to="user1@example.com", subject="S", body="B\n")
        assert not any(secret in text for text in mcp.seen)
    assert "holds a password" in error
