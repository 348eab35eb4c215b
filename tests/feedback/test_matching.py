"""Whose address a finding is about, once its message is known."""

from __future__ import annotations

import pytest

from batchmail.feedback.matching import named_address
from batchmail.feedback.notifications import Finding
from batchmail.state.feedback import Delivered, FeedbackKind

SENT = Delivered("20261202T184457Z-a1b2c3", 1, "Ann@Bücher.example")


@pytest.mark.parametrize(
    ("final", "original", "named"),
    [
        ("ann@xn--bcher-kva.example", None, "Ann@Bücher.example"),  # the recipient, other form
        ("ann.forward@example.net", "Ann@Bücher.example", "Ann@Bücher.example"),  # forwarded
        (None, None, "Ann@Bücher.example"),  # names nobody
        ("not an address", None, "Ann@Bücher.example"),
        ("manager@example.com", None, "manager@example.com"),  # a copy (cc) of the message
    ],
)
def test_the_address_named(final: str | None, original: str | None, named: str) -> None:
    finding = Finding(FeedbackKind.BOUNCED, "5.1.1", "", final, original)

    address = named_address(finding, SENT)

    assert address is not None
    assert address.address == named
