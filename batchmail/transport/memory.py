"""A transport that keeps every message in a list: for tests, and for programs that use batchmail
as a library and want to see what a job would send (as Django's locmem email backend does)."""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct

from batchmail.load.addresses import mailbox
from batchmail.transport.contract import Envelope, Outcome, OutcomeState, Refusal


class Kept(Struct, frozen=True):
    """One message a `MemoryTransport` took: what a server would have received."""

    seq: int  # the recipient's number in the job
    sender: str  # MAIL FROM
    recipients: tuple[str, ...]  # RCPT TO: the primary recipient, then the copies taken
    data: bytes  # the message, byte for byte
    smtputf8: bool = False  # whether the envelope needed SMTPUTF8 (RFC 6531)


class MemoryTransport:
    """Appends each message to `outbox` and answers 250, as a server that accepts everything
    would; transports given the same list share it. A recipient in `refuse` (any form of the
    address: an IDN domain in U-labels or A-labels) is refused with a 550: a primary recipient's
    message is kept nowhere, a refused copy is left out of the message's recipients."""

    def __init__(self, outbox: list[Kept] | None = None, refuse: Iterable[str] = ()):
        self.outbox: list[Kept] = [] if outbox is None else outbox
        self._refused = frozenset(mailbox(address).key for address in refuse)

    def send(self, envelope: Envelope) -> Outcome:
        route = envelope.route
        refused = tuple(_refusal(copy) for copy in route.copies if self._refuses(copy))
        if not route.copies_only and self._refuses(route.recipient):
            refusal = _refusal(route.recipient)
            return Outcome(OutcomeState.FAILED, refusal.code, refusal.response, refused=refused)
        taken = tuple(a for a in route.recipients if not refused or not self._refuses(a))
        if not taken:  # a copies-only route whose every copy was refused
            return Outcome(
                OutcomeState.FAILED, refused[0].code, refused[0].response, refused=refused
            )
        self.outbox.append(Kept(route.seq, route.sender, taken, envelope.data, route.smtputf8))
        return Outcome(OutcomeState.SENT, 250, "2.0.0 kept in memory", refused=refused)

    def _refuses(self, address: str) -> bool:
        return bool(self._refused) and mailbox(address, checked=True).key in self._refused

    def close(self) -> None:
        pass


def _refusal(address: str) -> Refusal:
    return Refusal(address, 550, f"5.1.1 <{address}>: recipient refused")
