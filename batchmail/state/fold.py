"""Folding a record log into SQLite: what a log's records do to each recipient, as one update.

The send loop appends `begin` and `finish` records to a per-process log (record_log.py), and
`copies` records for a retry to a message's refused copies; the journal applies them in batches
with APPLY, one update per recipient a log touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from batchmail.errors import StateError
from batchmail.state.records import RefusedCopy
from batchmail.state.states import DeliveryState

BEGIN, FINISH, COPIES = "begin", "finish", "copies"
# A recipient's records in one log are applied as one update: the attempts they began, and
# the last state, reply and time (begin and finish records alike make the state and time).
APPLY = (
    "UPDATE deliveries SET state = ?1, attempts = attempts + ?2, "
    "code = CASE WHEN ?3 THEN ?4 ELSE code END, "
    "response = CASE WHEN ?3 THEN ?5 ELSE response END, "
    "invocation = ?6, updated = ?7, sent_at = coalesce(?8, sent_at) "
    "WHERE run_id = ?9 AND seq = ?10"
)
# The same, for a recipient whose records also list refused copies: a finish record's, or a
# copies record's, of a retry to the copies alone, which makes only the copies and the time. A
# message without copies is applied by APPLY, with none of this work.
APPLY_WITH_COPIES = (
    "UPDATE deliveries SET state = coalesce(?1, state), attempts = attempts + ?2, "
    "code = CASE WHEN ?3 THEN ?4 ELSE code END, "
    "response = CASE WHEN ?3 THEN ?5 ELSE response END, "
    "invocation = coalesce(?6, invocation), updated = ?7, sent_at = coalesce(?8, sent_at), "
    "refused = ?11, waiting = ?12 "
    "WHERE run_id = ?9 AND seq = ?10"
)
# A refused copy in a record: [email, code, response].
CopyRecord = list[Any]


def copy_records(refused: Iterable[RefusedCopy]) -> list[CopyRecord]:
    return [[copy.email, copy.smtp_code, copy.smtp_response] for copy in refused]


class Change(Struct):
    """What a log's records do to one recipient, as the parameters of APPLY (or of
    APPLY_WITH_COPIES)."""

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
    copies_known: bool = False  # a record listed refused copies
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

    def copies(self, when: float, refused: list[CopyRecord]) -> None:
        """The copies refused, as a finish or a copies record lists them."""
        self.when, self.copies_known, self.refused = when, True, refused

    def parameters(self) -> tuple[Any, ...]:
        applied = (
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
        )
        if not self.copies_known:
            return applied
        return (*applied, *(_column(self.refused) if self.refused else (None, None)))


def _column(records: list[CopyRecord]) -> tuple[str, int | None]:
    """The refused copies as the journal keeps them, and how many of them wait for a retry."""
    refused = [RefusedCopy(*record) for record in records]
    return msgspec.json.encode(refused).decode(), sum(c.waiting for c in refused) or None


def changes_of(
    records: Iterable[list[Any]], path: Path
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The parameters of APPLY, then those of APPLY_WITH_COPIES, for each recipient a log's
    records touch: one update each."""
    changes: dict[tuple[str, int], Change] = {}
    for record in records:
        refused: list[CopyRecord] | None = None
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
        if refused is not None:
            change.copies(when, refused)
    plain = [c.parameters() for c in changes.values() if not c.copies_known]
    return plain, [c.parameters() for c in changes.values() if c.copies_known]
