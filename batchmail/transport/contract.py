"""What every transport deals in: a message and its route in, an outcome back."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from msgspec import Struct

from batchmail.load.addresses import Mailbox


class Route(Struct, frozen=True):
    """Where a message goes: the envelope's sender and recipient (RFC 5321 forms), and whether
    they need SMTPUTF8 (RFC 6531)."""

    seq: int
    sender: str
    recipient: str
    smtputf8: bool = False

    @classmethod
    def between(cls, seq: int, sender: Mailbox, recipient: Mailbox) -> Route:
        # RFC 6531: a non-ASCII address on either side of the envelope needs SMTPUTF8.
        smtputf8 = sender.smtputf8 or recipient.smtputf8
        return cls(seq, sender.envelope_address, recipient.envelope_address, smtputf8)


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


class Outcome(Struct, frozen=True):
    """What became of one message."""

    state: OutcomeState
    code: int | None
    response: str
    sender_refused: bool = False  # the server refused MAIL FROM: not the recipient's doing


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
