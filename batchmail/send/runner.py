"""The send loop: which recipients still need a message, pacing, retries, and when to stop.

It owns no I/O: recipients come from the composer, state goes to the journal, bytes go to the
transports, time comes from the injected clock. A dry run is only another transport.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from msgspec import Struct, field, structs

from batchmail.build.compose import Composer, Validation
from batchmail.build.mime import date_header
from batchmail.errors import ConnectFailure, invalid
from batchmail.load.job import display_path
from batchmail.load.recipients import Recipient
from batchmail.load.settings import Job
from batchmail.load.suppression import NO_SUPPRESSION, Suppression
from batchmail.send.copies import refused_copies, still_refused
from batchmail.send.halt import Halt, HaltReason
from batchmail.send.kept import KeptMessages
from batchmail.send.pacing import Clock, QuotaReached, RateLimiter
from batchmail.send.share import WHOLE, Share
from batchmail.state.journal import Journal
from batchmail.state.records import RefusedCopy, Run
from batchmail.transport.contract import (
    DELIVERED_OUTCOMES,
    Envelope,
    Outcome,
    OutcomeState,
    Route,
    Transport,
)
from batchmail.transport.pipelining import InFlight, Pipelined, opened, replies

MAX_HELD_FOR_RETRY = 10_000  # deferred recipients kept in memory for retries within the run
# The same permanent refusal of our sender this many times in a row means every further message
# would be refused too (a wrong From, a blocked account): stop instead of burning the list.
SENDER_REFUSALS_TO_STOP = 3
_CHUNK = 1000


class Event(Struct, frozen=True):
    """One transaction's end, for progress displays and logs."""

    recipient: Recipient
    outcome: Outcome
    attempt: int
    message_id: str
    started: float  # clock time the transaction began
    seconds: float  # how long it took


class _Flight(Struct, frozen=True):
    """A message of a session, from its start to its outcome."""

    recipient: Recipient
    message_id: str
    started: float  # clock time the transaction began
    pending: InFlight | None = None  # once its content went out, the reply to await
    # A retry to the message's copies alone: every copy refused before, and those retried.
    copies: tuple[RefusedCopy, ...] | None = None
    retried: tuple[str, ...] = ()


class _Session(Struct):
    transport: Transport
    pipelined: Pipelined | None  # the same transport, when it has the extension
    announced: Recipient | None = None  # sent next: its envelope went behind the last content
    flight: _Flight | None = None  # the message whose reply is awaited


def choose_run(journal: Journal, job: Job, validation: Validation, *, new_run: bool) -> Run:
    """Resume the unfinished run, start a new one, or refuse when inputs changed mid-run."""
    latest = journal.latest_run()
    if latest is None or new_run:
        return journal.start_run(validation.digest, validation.count)
    run_id, digest, finished = latest
    if digest == validation.digest:
        return journal.resume_run(run_id)
    if finished:
        return journal.start_run(validation.digest, validation.count)
    reached = journal.reached(run_id)
    raise invalid(
        display_path(job.path),
        f"the inputs changed while run {run_id} is unfinished "
        f"({reached} recipients already reached). Restore the inputs and run again to "
        "finish it, or pass --new-run to send the new version to every recipient, "
        "including those already reached",
    )


class Runner(Struct):
    job: Job
    composer: Composer
    journal: Journal
    transports: Callable[[], Transport]
    limiter: RateLimiter
    clock: Clock
    stop: threading.Event
    kept: KeptMessages  # what the validation pass built, to send without building it again
    on_event: Callable[[Event], None] = lambda event: None
    skip_unknown: bool = False
    share: Share = WHOLE  # the recipients this runner sends
    connections: int = 0  # SMTP sessions of this runner; 0: the job's rate.connections
    suppression: Suppression = NO_SUPPRESSION  # read by this invocation: never mailed
    rng: random.Random = field(default_factory=random.Random)
    halt: Halt | None = None
    sent_now: int = 0
    _sender_refusals: list[str] = field(default_factory=list)
    _retry: list[Recipient] = field(default_factory=list)
    # Recipients whose message went, with copies the server refused for now: every copy it
    # refused, until a retry to those copies alone settles them.
    _copies: dict[int, tuple[RefusedCopy, ...]] = field(default_factory=dict)
    _unpaced: bool = False  # set from the job

    def __post_init__(self) -> None:
        self._unpaced = not self.job.rate.paced  # asked for every message: once

    def run(self, run: Run) -> Halt | None:
        """Send every recipient of `run` not yet delivered, then retry the deferred ones."""
        started = self.clock()
        self._send_round(run, self._todo(run), attempt=1)
        for attempt in range(2, self.job.retry_max_attempts + 1):
            if not self._retry or self.halt is not None:
                break
            left = started + self.job.retry_window - self.clock()
            if left <= 0:
                break
            # The first round's own time is part of the window: the backoff may not all fit.
            delay = min(self._backoff(attempt), left)
            if self.stop.wait(delay):
                self._halt(Halt(HaltReason.INTERRUPTED, "interrupted"))
                break
            batch, self._retry = self._retry, []
            self._send_round(run, iter(batch), attempt)
        return self.halt

    def _backoff(self, attempt: int) -> float:
        """Exponential, with jitter: all retries together fit within retry.window."""
        steps = 2 ** (self.job.retry_max_attempts - 1) - 1
        share = self.job.retry_window * 2.0 ** (attempt - 2) / steps
        return float(share * self.rng.uniform(0.5, 1.0))

    def _todo(self, run: Run) -> Iterator[Recipient]:
        """The recipients of the run that still need a message, in order, then those whose
        message has copies waiting for a retry (an earlier invocation's). A suppressed one is
        recorded as such as it is taken, never sent nor paced."""
        suppression = self.suppression if self.suppression else None
        for recipient in self._recipients(self._seqs_to_send(run)):
            where = suppression.listed(recipient.mailbox) if suppression is not None else None
            if where is None:
                yield recipient
            else:
                self.journal.suppressed(run, recipient.seq, f"listed in {where}")
        # Those of this invocation are held for the retry rounds already.
        known = self._copies
        waiting = [w for w in self.journal.waiting_copies(run, self.share) if w[0] not in known]
        known.update(waiting)
        yield from self._recipients(seq for seq, _ in waiting)

    def _recipients(self, seqs: Iterator[int]) -> Iterator[Recipient]:
        """The recipients numbered `seqs` (in order): those the validation pass kept, else
        streamed from a second pass over the recipients."""
        stream: Iterator[Recipient] | None = None
        for seq in seqs:
            recipient = self.kept.recipient(seq)
            if recipient is None:
                stream = stream or self.composer.recipients([], second_pass=True)
                recipient = next((r for r in stream if r.seq == seq), None)
            if recipient is None:
                raise invalid(
                    display_path(self.job.path),
                    f"recipient {seq} is missing: the recipients changed while the job ran",
                )
            yield recipient

    def _seqs_to_send(self, run: Run) -> Iterator[int]:
        after = 0
        while seqs := self.journal.to_send(run, after, _CHUNK, self.skip_unknown, self.share):
            yield from seqs
            after = seqs[-1]

    def _send_round(self, run: Run, recipients: Iterator[Recipient], attempt: int) -> None:
        """Deliver `recipients` over this runner's sessions, all from this one thread: while one
        session's server reads a message, the next message is built and sent on another, with
        none of the hand-overs and lock traffic that a thread per session costs."""
        count = self.connections or max(1, self.job.rate.connections)
        try:
            route = self._route if self._unpaced else None
            transports, recipients = opened(self.transports, count, recipients, route)
            sessions = [_session(transport) for transport in transports]
        except BaseException as exc:  # the caller raises it once the journal is folded
            self._halt(Halt(HaltReason.ERROR, str(exc), exc))
            return
        try:
            while self._start_idle(run, sessions, recipients, attempt):
                self._land_replied(run, sessions, attempt)
        except BaseException as exc:  # the caller raises it once the journal is folded
            self._halt(Halt(HaltReason.ERROR, str(exc), exc))
        finally:
            for session in sessions:
                session.transport.close()

    def _stopping(self) -> bool:
        if self.stop.is_set() and self.halt is None:
            self._halt(Halt(HaltReason.INTERRUPTED, "interrupted"))
        return self.halt is not None

    def _start_idle(
        self, run: Run, sessions: list[_Session], recipients: Iterator[Recipient], attempt: int
    ) -> bool:
        """Put a message in flight on every session without one; whether any is in flight."""
        for session in sessions:
            while session.flight is None and not self._stopping():
                recipient, session.announced = session.announced, None
                recipient = recipient or next(recipients, None)
                if recipient is None:
                    break
                self._start(run, session, recipient, recipients, attempt)
        return any(session.flight is not None for session in sessions)

    def _land_replied(self, run: Run, sessions: list[_Session], attempt: int) -> None:
        """Wait for the first reply to a message in flight; record those that have come."""
        flying = {s.flight.pending: s for s in sessions if s.flight and s.flight.pending}
        for pending, outcome in replies(list(flying)):
            session = flying[pending]
            flight, session.flight = session.flight, None
            assert flight is not None
            self._land(run, flight, outcome, attempt)

    def _start(
        self,
        run: Run,
        session: _Session,
        recipient: Recipient,
        recipients: Iterator[Recipient],
        attempt: int,
    ) -> None:
        if not self._open(session) or self._stopping():
            return
        message_id = self.composer.message_id(run.run_id, recipient.seq)
        envelope = self._envelope(recipient, message_id)
        following = None
        pipelined = session.pipelined
        # Announcing the next message's envelope early keeps its DATA open until its turn: only
        # when nothing paces the job, or a server would wait for it, even time out.
        if self._unpaced and pipelined is not None:
            session.announced = next(recipients, None)
            following = self._route(session.announced) if session.announced else None
        copies = self._copies.get(recipient.seq) if self._copies else None
        if copies is None:
            self.journal.begin(run, recipient.seq)
            flight = _Flight(recipient, message_id, self.clock())
        else:  # the primary recipient has the message: its row stays as it is
            flight = _Flight(
                recipient, message_id, self.clock(), None, copies, envelope.route.copies
            )
        try:
            if pipelined is not None:
                started = pipelined.start(envelope, following)
            else:
                started = session.transport.send(envelope)
        except ConnectFailure as exc:
            started = Outcome(OutcomeState.DEFERRED, None, str(exc))
            self._halt(Halt(HaltReason.CONNECTION, str(exc), exc))
        if isinstance(started, Outcome):
            self._land(run, flight, started, attempt)
        else:
            session.flight = structs.replace(flight, pending=started)

    def _open(self, session: _Session) -> bool:
        """Wait for the pace, and make sure a pipelined session is open: before the journal
        marks anything, so that a refused session sends nothing."""
        try:
            self.limiter.acquire()
            if session.pipelined is not None:
                session.pipelined.open()
        except QuotaReached as quota:
            self._halt(Halt(HaltReason.QUOTA, _quota_message(quota, self.clock)))
            return False
        except ConnectFailure as exc:
            self._halt(Halt(HaltReason.CONNECTION, str(exc), exc))
            return False
        return True

    def _land(self, run: Run, flight: _Flight, outcome: Outcome, attempt: int) -> None:
        recipient = flight.recipient
        if flight.copies is not None:
            self._land_copies(run, flight, outcome)
            return
        state, code, response = outcome.state, outcome.code, outcome.response
        refused = refused_copies(outcome) if outcome.refused and state == OutcomeState.SENT else ()
        self.journal.finish(run, recipient.seq, state, code, response, refused=refused)
        if refused:
            self._copies_refused(recipient, refused)
        seconds = self.clock() - flight.started
        self._record(Event(recipient, outcome, attempt, flight.message_id, flight.started, seconds))

    def _land_copies(self, run: Run, flight: _Flight, outcome: Outcome) -> None:
        """A retry to a message's copies: those it reached leave the refused ones. It is no
        delivery event: the recipient's message went before."""
        assert flight.copies is not None
        refused = still_refused(flight.copies, flight.retried, outcome)
        self.journal.finish_copies(run, flight.recipient.seq, refused)
        self._copies.pop(flight.recipient.seq, None)
        self._copies_refused(flight.recipient, refused)
        if outcome.state == OutcomeState.SENT:
            self.sent_now += 1
        self._count_sender_refusal(outcome)

    def _copies_refused(self, recipient: Recipient, refused: tuple[RefusedCopy, ...]) -> None:
        """Copies refused for now are retried as deferred recipients are: to them alone."""
        if any(copy.waiting for copy in refused) and len(self._retry) < MAX_HELD_FOR_RETRY:
            self._copies[recipient.seq] = refused
            self._retry.append(recipient)

    def _envelope(self, recipient: Recipient, message_id: str) -> Envelope:
        date = date_header(self.clock())
        data = self.kept.message_bytes(recipient, message_id=message_id, date=date)
        return Envelope(self._route(recipient), data)

    def _route(self, recipient: Recipient) -> Route:
        addressing = self.composer.addressing(recipient)
        copies = self._copies.get(recipient.seq) if self._copies else None
        if copies is None:
            return Route.between(
                recipient.seq, addressing.sender, recipient.mailbox, addressing.copies
            )
        waiting = {copy.email for copy in copies if copy.waiting}
        retried = [c for c in addressing.copies if c.envelope_address in waiting]
        return Route.between(
            recipient.seq, addressing.sender, recipient.mailbox, retried, copies_only=True
        )

    def _record(self, event: Event) -> None:
        outcome = event.outcome
        if outcome.state in DELIVERED_OUTCOMES:
            self.sent_now += 1
        elif outcome.state == OutcomeState.DEFERRED and len(self._retry) < MAX_HELD_FOR_RETRY:
            self._retry.append(event.recipient)
        self._count_sender_refusal(outcome)
        self.on_event(event)

    def _count_sender_refusal(self, outcome: Outcome) -> None:
        if not (outcome.sender_refused and outcome.state == OutcomeState.FAILED):
            self._sender_refusals.clear()
            return
        self._sender_refusals.append(f"{outcome.code} {outcome.response}")
        recent = self._sender_refusals[-SENDER_REFUSALS_TO_STOP:]
        if len(recent) == SENDER_REFUSALS_TO_STOP and len(set(recent)) == 1:
            self.halt = self.halt or Halt(
                HaltReason.SENDER_REFUSED,
                f"the server refused the sender "
                f"{self.job.sender.address} {len(recent)} times in a "
                f"row ({recent[0]}); fix the sender or the account "
                "and run again to continue",
            )
            self.stop.set()

    def _halt(self, halt: Halt) -> None:
        if self.halt is None:
            self.halt = halt
        self.stop.set()


def _session(transport: Transport) -> _Session:
    """A session of the send loop: pipelined when the transport has the extension, else driven
    one `send` at a time."""
    return _Session(transport, transport if isinstance(transport, Pipelined) else None)


def _quota_message(quota: QuotaReached, clock: Clock) -> str:
    when = datetime.fromtimestamp(quota.next_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    span = {3600.0: "hour", 86400.0: "day"}.get(quota.span, f"{quota.span:g} s")
    wait = max(0.0, quota.next_at - clock())
    return (
        f"quota reached: {quota.limit} messages per {span}; the next message may go at "
        f"{when} (in {wait / 60:.0f} min): run again then to continue"
    )
