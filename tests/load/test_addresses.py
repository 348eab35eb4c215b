"""The one address model: its forms, its matching keys and how it is shown."""

from __future__ import annotations

import pytest

from batchmail.load.addresses import mailbox, parse_mailbox


def test_an_idn_domain_has_both_forms() -> None:
    box = parse_mailbox("Bob <idn@bücher.example>")
    assert box.envelope_address == "idn@xn--bcher-kva.example"
    assert box.unicode_address == "idn@bücher.example"
    assert box.shown == "Bob <idn@bücher.example>"
    assert not box.smtputf8


def test_both_forms_of_an_idn_domain_match() -> None:
    written = mailbox("idn@BÜCHER.example")
    ascii_form = mailbox("idn@xn--bcher-kva.example")
    assert written.key == ascii_form.key
    assert written.domain_key == ascii_form.domain_key == "xn--bcher-kva.example"


def test_a_non_ascii_local_part_travels_as_written() -> None:
    box = parse_mailbox("Zhang Wei <张伟@例子.example>")
    assert box.smtputf8
    assert box.envelope_address == "张伟@例子.example"
    assert box.shown == "Zhang Wei <张伟@例子.example>"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("张伟", "张伟 <zhang@example.com>"),
        ("Smith, John", '"Smith, John" <zhang@example.com>'),
        ('Say "hi"', '"Say \\"hi\\"" <zhang@example.com>'),
    ],
)
def test_a_display_name_is_shown_as_written_and_quoted_where_needed(name: str, shown: str) -> None:
    assert mailbox("zhang@example.com", name).shown == shown
