"""Address headers: any display name beside any address `mailbox()` accepts reads back as
written, whether the message needs SMTPUTF8 (a non-ASCII local part) or not."""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.policy import compat32

from hypothesis import example, given, reject, settings
from hypothesis import strategies as st
from support import parse_utf8

from batchmail.build.mime import Content, MessageBuilder, address_header
from batchmail.load.addresses import AddressError, Mailbox, mailbox, parse_mailbox

_ATEXT = "!#$%&'*+-/=?^_`{|}~."
_LOCAL = st.text(st.characters(categories=["L", "N"]) | st.sampled_from(_ATEXT), max_size=40)
_DOMAIN = st.sampled_from(["example.com", "bücher.example", "例子.中国", "xn--bcher-kva.example"])
# Any text but surrogates, which no message can carry; `mailbox()` refuses the line breaks.
# Spaces and tabs come single, between words: a reader takes a run of them in a plain ASCII
# name as one folding space (RFC 5322 3.2.2), and the header keeps such a name unquoted.
_NAMES = st.text(st.characters(exclude_categories=["Cs"]), max_size=60).map(
    lambda name: re.sub(r"[ \t]+", " ", name).strip(" \t")
)
BUILDER = MessageBuilder(parse_mailbox("Reports <reports@example.com>"))


@st.composite
def mailboxes(draw: st.DrawFn) -> Mailbox:
    try:
        return mailbox(f"{draw(_LOCAL)}@{draw(_DOMAIN)}", draw(_NAMES))
    except AddressError:
        reject()


def message_to(box: Mailbox) -> bytes:
    content = Content(to=box, subject="Report", text="Hello\n", html=None)
    return BUILDER.build(
        content, message_id="<1@example.com>", date="Wed, 2 Dec 2026 17:00:00 +0000"
    )


def display_name(data: bytes, parsed: str) -> str:
    """The parsed display name; for encoded-words, their RFC 2047 decoding: Python's address
    parser keeps the folding space between two encoded-words, which RFC 2047 6.2 drops."""
    raw = HeaderParser(policy=compat32).parsestr(data.decode("utf-8"))["To"]
    phrase = raw.rpartition("<")[0].strip()
    if not phrase.startswith("=?"):
        return parsed
    return str(make_header(decode_header(phrase)))


def test_an_ascii_message_keeps_its_bytes() -> None:
    box = mailbox("bob@example.com", 'Bob "the" Builder, Jr.')
    assert address_header("To", box) == b'To: "Bob \\"the\\" Builder, Jr." <bob@example.com>\r\n'


@settings(max_examples=300, deadline=None)
@given(mailboxes())
@example(mailbox("josé@example.com", "Bob"))
@example(mailbox("josé@example.com", 'Bob "the" Builder, Jr.'))
@example(mailbox("张伟@例子.中国", "张伟"))
@example(mailbox("josé@example.com", "=?utf-8?q?=0A?="))
@example(mailbox("josé@example.com", " Zoë  Müller "))
@example(mailbox("a@example.com", "00" + "\U00010000" * 11))  # two encoded-words
def test_the_to_header_reads_back_as_written(box: Mailbox) -> None:
    data = message_to(box)

    head = data.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", head)  # no line break but CRLF
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    [to] = parse_utf8(data)["To"].addresses
    assert to.addr_spec == box.envelope_address
    assert display_name(data, to.display_name) == box.name
    assert data.isascii() or box.smtputf8 or not box.name.isascii()
