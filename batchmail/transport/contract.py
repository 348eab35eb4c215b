"""What every transport deals in: a message and its route in, an outcome back."""

from __future__ import annotations

from typing import Protocol

from msgspec import Struct


class Route(Struct, frozen=True):
    """Where a message goes: the envelope's sender and recipient (RFC 5321 forms), and whether
    they need SMTPUTF8 (RFC 6531)."""

    seq: int
    sender: str
    recipient: str
    smtputf8: bool = False


class Envelope(Struct, frozen=True):
    """A message and where it goes."""

    route: Route
    data: bytes


class Outcome(Struct, frozen=True):
    """What became of one message: sent | failed | deferred | unknown | previewed."""

    state: str
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
