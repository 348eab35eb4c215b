"""Folding a record log into SQLite: what a log's records do to each recipient, as one update.

The send loop appends `begin` and `finish` records to a per-process log (record_log.py); the
journal applies them in batches with APPLY, one update per recipient a log touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from msgspec import Struct

from batchmail.errors import StateError
from batchmail.state.states import DeliveryState

BEGIN, FINISH = "begin", "finish"
# A recipient's records in one log are applied as one update: the attempts they began, and
# the last state, reply and time (begin and finish records alike make the state and time).
APPLY = (
    "UPDATE deliveries SET state = ?1, attempts = attempts + ?2, "
    "code = CASE WHEN ?3 THEN ?4 ELSE code END, "
    "response = CASE WHEN ?3 THEN ?5 ELSE response END, "
    "invocation = ?6, updated = ?7, sent_at = coalesce(?8, sent_at) "
    "WHERE run_id = ?9 AND seq = ?10"
)


class Change(Struct):
    """What a log's records do to one recipient, as the parameters of APPLY."""

    run_id: str
    seq: int
    state: str = DeliveryState.PENDING
    began: int = 0  # attempts begun
    replied: bool = False
    code: int | None = None
    response: str | None = None
    invocation: int = 0
    when: float = 0.0
    sent_at: float | None = None

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

    def parameters(self) -> tuple[Any, ...]:
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
        )


def changes_of(records: Iterable[list[Any]], path: Path) -> Iterator[tuple[Any, ...]]:
    """The parameters of APPLY for each recipient a log's records touch, in order."""
    changes: dict[tuple[str, int], Change] = {}
    for record in records:
        match record:
            case [kind, run_id, seq, invocation, when] if kind == BEGIN:
                reply = None
            case [kind, run_id, seq, invocation, when, state, code, response] if kind == FINISH:
                reply = (state, code, response)
            case _:
                raise StateError(
                    f"the journal log {path} has a record batchmail does not know: {record}"
                )
        change = changes.get((run_id, seq))
        if change is None:
            change = changes[run_id, seq] = Change(run_id, seq)
        change.apply(invocation, when, reply)
    return (change.parameters() for change in changes.values())
