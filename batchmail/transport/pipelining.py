"""The optional extension of a transport whose sessions keep several messages moving at once.

A `Pipelined` transport opens its session ahead of the first message, sends a message's content
without waiting for the reply (an `InFlight`), and may send the next message's envelope behind
it (RFC 2920). The send loop drives many such sessions from one thread with `replies`; a
transport without the extension is driven through `send` alone.
"""

from __future__ import annotations

import itertools
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from batchmail.transport.contract import Envelope, Outcome, Route, Transport


class InFlight(Protocol):
    """A message whose content went out: the server's reply is still to be read."""

    @property
    def deadline(self) -> float:
        """Monotonic time by which the reply must have come."""
        ...

    def fileno(self) -> int:
        """The socket the reply arrives on."""
        ...

    def finish(self) -> Outcome:
        """Read the reply: it says what became of the message."""
        ...

    def abandon(self, reason: str) -> Outcome:
        """Give up on the reply: the message's fate is unknown."""
        ...


@runtime_checkable
class Pipelined(Transport, Protocol):
    def open(self) -> None:
        """Make sure a session is open, before the message is marked as started: a session that
        cannot open sends nothing. Raises ConnectFailure."""
        ...

    def start(self, envelope: Envelope, following: Route | None = None) -> Outcome | InFlight:
        """One transaction: its outcome, or, once the content went out, the reply to await.
        `following`: the message this session sends next, if known."""
        ...


@runtime_checkable
class OpensAhead(Protocol):
    def open_ahead(self, first: Route | None = None) -> bool:
        """Open the session now, and send the envelope of `first`, its first message, if it
        can: whether it opened. A failure is raised by the next `open`."""
        ...


T = TypeVar("T")


def opened(
    make: Callable[[], Transport], count: int, todo: Iterator[T], route: Callable[[T], Route] | None
) -> tuple[list[Transport], Iterator[T]]:
    """`count` transports for a send loop, and `todo` unchanged. When the loop announces each
    session's next message (`route` gives a message's envelope), the sessions it will use are
    opened now, together, each with its first message's envelope sent: one thread drives them
    all, and opening them one at a time, as each gets its first message, would hold the replies
    of the others for some six round trips (connect, EHLO, STARTTLS, EHLO, AUTH) and one more
    (the first envelope's) per session."""
    transports = [make() for _ in range(count)]
    if route is None:
        return transports, todo
    first = list(itertools.islice(todo, 2 * count))
    # Session i starts with messages 2i and 2i + 1: the second is announced behind the first.
    open_together(list(zip(transports, map(route, first[::2]), strict=False)))
    return transports, itertools.chain(first, todo)


def open_together(sessions: Sequence[tuple[Transport, Route]]) -> None:
    """Open the sessions of those transports that can open ahead, each sending its first
    message's envelope: the first alone, so that refused credentials are tried once, then the
    others each in a thread of its own."""
    ahead = [(t, first) for t, first in sessions if isinstance(t, OpensAhead)]
    if not ahead or not ahead[0][0].open_ahead(ahead[0][1]):
        return
    threads = [threading.Thread(target=t.open_ahead, args=(r,), daemon=True) for t, r in ahead[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def replies(flights: Sequence[InFlight]) -> list[tuple[InFlight, Outcome]]:
    """The outcomes of the messages whose replies have come, after waiting for the first; a
    message without a reply by its deadline ends `unknown`, as a blocking read would leave it.

    A message goes in flight only once every reply before its content has been read, so a reply
    to it cannot be sitting unread in a buffer: waiting on the sockets is enough."""
    if len(flights) == 1:  # nothing to do meanwhile: the read waits, up to the same timeout
        return [(flights[0], flights[0].finish())]
    poller = select.poll()
    for flight in flights:
        poller.register(flight, select.POLLIN)
    wait = min(flight.deadline for flight in flights) - time.monotonic()
    ready = {fd for fd, _ in poller.poll(max(0.0, 1000 * wait))}
    now = time.monotonic()
    answered = [flight for flight in flights if flight.fileno() in ready]
    late = [flight for flight in flights if flight not in answered and flight.deadline <= now]
    return [(f, f.finish()) for f in answered] + [(f, f.abandon("timed out")) for f in late]
