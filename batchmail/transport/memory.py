"""A transport that keeps every message in a list: for tests, and for programs that use batchmail
as a library and want to see what a job would send (as Django's locmem email backend does)."""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct

from batchmail.load.addresses import mailbox
from batchmail.transport.contract import Envelope, Outcome, OutcomeState


class Kept(Struct, frozen=True):
    """One message a `MemoryTransport` took: what a server would have received."""

    seq: int  # the recipient's number in the job
    sender: str  # MAIL FROM
    recipients: tuple[str, ...]  # RCPT TO
    data: bytes  # the message, byte for byte
    smtputf8: bool = False  # whether the envelope needed SMTPUTF8 (RFC 6531)


class MemoryTransport:
    """Appends each message to `outbox` and answers 250, as a server that accepts everything
    would; transports given the same list share it. A recipient in `refuse` (any form of the
    address: an IDN domain in U-labels or A-labels) is refused with a 550 and kept nowhere."""

    def __init__(self, outbox: list[Kept] | None = None, refuse: Iterable[str] = ()):
        self.outbox: list[Kept] = [] if outbox is None else outbox
        self._refused = frozenset(mailbox(address).key for address in refuse)

    def send(self, envelope: Envelope) -> Outcome:
        route = envelope.route
        if self._refused and mailbox(route.recipient, checked=True).key in self._refused:
            return Outcome(
                OutcomeState.FAILED, 550, f"5.1.1 <{route.recipient}>: recipient refused"
            )
        self.outbox.append(
            Kept(route.seq, route.sender, (route.recipient,), envelope.data, route.smtputf8)
        )
        return Outcome(OutcomeState.SENT, 250, "2.0.0 kept in memory")

    def close(self) -> None:
        pass
