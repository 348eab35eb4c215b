"""Copies of a recipient's message (cc, bcc) the server refused, and what is left of them after
a retry to the copies alone."""

from __future__ import annotations

from batchmail.state.records import RefusedCopy
from batchmail.transport.contract import Outcome, OutcomeState


def refused_copies(outcome: Outcome) -> tuple[RefusedCopy, ...]:
    """The copies the server refused, as the journal keeps them."""
    return tuple(RefusedCopy(r.address, r.code, r.response) for r in outcome.refused)


def still_refused(
    before: tuple[RefusedCopy, ...], retried: tuple[str, ...], outcome: Outcome
) -> tuple[RefusedCopy, ...]:
    """The copies refused after a retry to `retried`: those refused for good before, those the
    server refused again, and, when the message did not go, the others with its reply."""
    now = {copy.email: copy for copy in refused_copies(outcome)}
    went = outcome.state == OutcomeState.SENT
    after = []
    for copy in before:
        if copy.email not in retried:
            after.append(copy)
        elif copy.email in now:
            after.append(now[copy.email])
        elif not went:
            after.append(RefusedCopy(copy.email, outcome.code, outcome.response))
    return tuple(after)
