"""What every transport deals in: a message and its route in, an outcome back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from msgspec import Struct

if TYPE_CHECKING:
    from batchmail.transport.smtp import InFlight


class Route(Struct, frozen=True):
    """Where a message goes: all that MAIL FROM and RCPT TO need."""

    seq: int
    sender: str
    recipient: str
    smtputf8: bool = False

    def commands(self) -> bytes:
        """MAIL, RCPT and DATA, as one pipelined group (RFC 2920)."""
        option = " SMTPUTF8" if self.smtputf8 else ""
        text = f"MAIL FROM:<{self.sender}>{option}\r\nRCPT TO:<{self.recipient}>\r\nDATA\r\n"
        return text.encode("utf-8" if self.smtputf8 else "ascii")


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
    def open(self) -> None: ...

    def start(self, envelope: Envelope, following: Route | None = None) -> Outcome | InFlight:
        """One transaction: its outcome, or, once the content went out, the reply to await.
        `following`: the message this session sends next, if known."""
        ...

    def close(self) -> None: ...
