"""Folding a record log into SQLite: what a log's records do to each recipient, as one update.

The send loop appends `begin` and `finish` records to a per-process log (record_log.py), and
`copies` records for a retry to a message's refused copies; the journal applies them in batches
with APPLY, one update per recipient a log touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from batchmail.errors import StateError
from batchmail.state.records import RefusedCopy
from batchmail.state.states import DeliveryState

BEGIN, FINISH, COPIES = "begin", "finish", "copies"
# A recipient's records in one log are applied as one update: the attempts they began, and
# the last state, reply, refused copies and time (begin and finish records alike make the state
# and time; a copies record, of a retry to the copies alone, only the copies and the time).
APPLY = (
    "UPDATE deliveries SET state = coalesce(?1, state), attempts = attempts + ?2, "
    "code = CASE WHEN ?3 THEN ?4 ELSE code END, "
    "response = CASE WHEN ?3 THEN ?5 ELSE response END, "
    "invocation = coalesce(?6, invocation), updated = ?7, sent_at = coalesce(?8, sent_at), "
    "refused = CASE WHEN ?11 THEN ?12 ELSE refused END, "
    "waiting = CASE WHEN ?11 THEN ?13 ELSE waiting END "
    "WHERE run_id = ?9 AND seq = ?10"
)
# A refused copy in a record: [email, code, response].
CopyRecord = list[Any]


def copy_records(refused: Iterable[RefusedCopy]) -> list[CopyRecord]:
    return [[copy.email, copy.smtp_code, copy.smtp_response] for copy in refused]


class Change(Struct):
    """What a log's records do to one recipient, as the parameters of APPLY."""

    run_id: str
    seq: int
    state: str | None = None  # unchanged
    began: int = 0  # attempts begun
    replied: bool = False
    code: int | None = None
    response: str | None = None
    invocation: int | None = None  # unchanged
    when: float = 0.0
    sent_at: float | None = None
    copies_known: bool = False  # a finish or copies record said which copies were refused
    refused: list[CopyRecord] | None = None

    def apply(self, invocation: int, when: float, reply: tuple[str, int, str] | None) -> None:
        """One more record: a begin (no reply) or a finish (state, code, response)."""
        self.invocation, self.when = invocation, when
        if reply is None:
            self.state, self.began = DeliveryState.PENDING, self.began + 1
            return
        self.state, self.code, self.response = reply
        self.replied = True
        if self.state == DeliveryState.SENT:
            self.sent_at = when

    def copies(self, when: float, refused: list[CopyRecord] | None) -> None:
        """The copies refused, as a finish or a copies record lists them (None: none)."""
        self.when, self.copies_known, self.refused = when, True, refused

    def parameters(self) -> tuple[Any, ...]:
        refused, waiting = _column(self.refused) if self.refused else (None, None)
        return (
            self.state,
            self.began,
            self.replied,
            self.code,
            self.response,
            self.invocation,
            self.when,
            self.sent_at,
            self.run_id,
            self.seq,
            self.copies_known,
            refused,
            waiting,
        )


def _column(records: list[CopyRecord]) -> tuple[str, int | None]:
    """The refused copies as the journal keeps them, and how many of them wait for a retry."""
    refused = [RefusedCopy(*record) for record in records]
    return msgspec.json.encode(refused).decode(), sum(c.waiting for c in refused) or None


def changes_of(records: Iterable[list[Any]], path: Path) -> Iterator[tuple[Any, ...]]:
    """The parameters of APPLY for each recipient a log's records touch, in order."""
    changes: dict[tuple[str, int], Change] = {}
    for record in records:
        refused = None
        match record:
            case [kind, run_id, seq, invocation, when] if kind == BEGIN:
                reply = None
            case [kind, run_id, seq, invocation, when, state, code, response] if kind == FINISH:
                reply = (state, code, response)
            case [kind, run_id, seq, invocation, when, state, code, response, refused] if (
                kind == FINISH
            ):
                reply = (state, code, response)
            case [kind, run_id, seq, invocation, when, refused] if kind == COPIES:
                reply = None
            case _:
                raise StateError(
                    f"the journal log {path} has a record batchmail does not know: {record}"
                )
        change = changes.get((run_id, seq))
        if change is None:
            change = changes[run_id, seq] = Change(run_id, seq)
        if kind != COPIES:
            change.apply(invocation, when, reply)
        if kind != BEGIN:
            change.copies(when, refused)
    return (change.parameters() for change in changes.values())
