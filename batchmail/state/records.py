"""What the journal keeps: a validated recipient, a run, and a recipient's delivery."""

from __future__ import annotations

from msgspec import Struct

from batchmail.state.states import DeliveryState


class Staged(Struct, frozen=True):
    """One validated recipient, as the journal keeps it until a run takes it over."""

    seq: int
    email: str
    size: int
    attachments: list[str]


class Run(Struct, frozen=True):
    run_id: str
    digest: str
    total: int
    invocation: int
    resumed: bool  # an earlier invocation of this run exists


class RefusedCopy(Struct, frozen=True):
    """A copy of a recipient's message (cc, bcc) the server refused, as the report shows it."""

    email: str  # as the envelope gave it (RFC 5321)
    smtp_code: int | None
    smtp_response: str

    @property
    def waiting(self) -> bool:
        """Refused for now (4yz), or the retry could not reach the server: it is tried again."""
        return self.smtp_code is None or 400 <= self.smtp_code < 500


class Delivery(Struct, frozen=True):
    seq: int
    email: str
    state: DeliveryState
    code: int | None
    response: str | None
    attempts: int
    size: int | None
    attachments: list[str]
    touched_now: bool  # changed by the current invocation
    refused: tuple[RefusedCopy, ...] = ()  # copies the server refused


def report_status(delivery: Delivery) -> DeliveryState:
    """A recipient delivered by an earlier invocation is `skipped` in this one's report."""
    if delivery.state == DeliveryState.SENT and not delivery.touched_now:
        return DeliveryState.SKIPPED
    return delivery.state
