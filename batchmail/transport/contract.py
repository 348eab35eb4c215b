"""What every transport deals in: a message and its route in, an outcome back."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from msgspec import Struct

from batchmail.load.addresses import Mailbox


class Route(Struct, frozen=True):
    """Where a message goes: the envelope's sender and recipient (RFC 5321 forms), and whether
    they need SMTPUTF8 (RFC 6531).

    The primary recipient's reply decides the message: refused, it goes to nobody. With
    `copies_only` the primary already has it: the copies alone are the envelope's recipients,
    and the message goes to those of them the server accepts (a copy's retry)."""

    seq: int
    sender: str
    recipient: str
    smtputf8: bool = False
    copies: tuple[str, ...] = ()  # further envelope recipients of the same message (cc, bcc)
    copies_only: bool = False

    @classmethod
    def between(
        cls,
        seq: int,
        sender: Mailbox,
        recipient: Mailbox,
        copies: Sequence[Mailbox] = (),
        *,
        copies_only: bool = False,
    ) -> Route:
        # RFC 6531: a non-ASCII address anywhere in the envelope needs SMTPUTF8.
        smtputf8 = (
            sender.smtputf8
            or (recipient.smtputf8 and not copies_only)
            or any(c.smtputf8 for c in copies)
        )
        return cls(
            seq,
            sender.envelope_address,
            recipient.envelope_address,
            smtputf8,
            tuple(copy.envelope_address for copy in copies),
            copies_only,
        )

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every RCPT of the envelope, in order."""
        return self.copies if self.copies_only else (self.recipient, *self.copies)


class Envelope(Struct, frozen=True):
    """A message and where it goes."""

    route: Route
    data: bytes


class OutcomeState(StrEnum):
    """What a transport can report of one message. Each value is the recipient's delivery state
    of the same name (`state.states.DeliveryState`), which the journal records as it is."""

    SENT = "sent"  # the server accepted it (2yz)
    FAILED = "failed"  # refused permanently (5yz), or it could not go at all
    DEFERRED = "deferred"  # refused for now (4yz), or the connection was lost before the data
    UNKNOWN = "unknown"  # no reply after the data went out: it may have been delivered
    PREVIEWED = "previewed"  # a dry run wrote it to a file


# The message reached the server or the file.
DELIVERED_OUTCOMES = frozenset({OutcomeState.SENT, OutcomeState.PREVIEWED})


class Refusal(Struct, frozen=True):
    """A copy's envelope recipient (cc, bcc) the server refused (RCPT, 4yz or 5yz)."""

    address: str
    code: int | None
    response: str


class Outcome(Struct, frozen=True):
    """What became of one message: `state` is the primary recipient's (of a copies-only route:
    the message's, sent when any copy accepted it); the copies the server refused are in
    `refused`, the others share the message's fate."""

    state: OutcomeState
    code: int | None
    response: str
    sender_refused: bool = False  # the server refused MAIL FROM: not the recipient's doing
    refused: tuple[Refusal, ...] = ()


class Transport(Protocol):
    """What every transport does; `pipelining.Pipelined` is the optional extension that lets
    the send loop keep several messages of a session moving at once."""

    def send(self, envelope: Envelope) -> Outcome:
        """Deliver one message (opening a session first if the transport has sessions): what
        became of it. Raises ConnectFailure when no session could be opened, StateError when
        the transport's own storage fails."""
        ...

    def close(self) -> None:
        """End the session, if any; the transport may be used again. Closing twice is harmless."""
        ...
