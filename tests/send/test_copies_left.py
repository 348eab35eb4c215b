"""What is left of a message's refused copies after a retry to the waiting ones alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchmail.send.copies import still_refused
from batchmail.state.records import RefusedCopy
from batchmail.transport.contract import Outcome, OutcomeState, Refusal

addresses = st.lists(st.emails(), min_size=1, max_size=6, unique=True)
codes = st.sampled_from([None, 421, 450, 451, 452, 550, 551, 552, 553, 554])
states = st.sampled_from(list(OutcomeState))


@given(addresses, st.data(), states, codes)
def test_a_retry_settles_exactly_the_copies_it_retried(
    emails: list[str], data: st.DataObject, state: OutcomeState, code: int | None
) -> None:
    before = tuple(RefusedCopy(e, data.draw(codes), f"reply to {e}") for e in emails)
    retried = tuple(c.email for c in before if c.waiting)
    again = data.draw(st.lists(st.sampled_from(retried), unique=True)) if retried else []
    outcome = Outcome(
        state, code, "the message's reply", refused=tuple(Refusal(e, 452, "again") for e in again)
    )

    after = still_refused(before, retried, outcome)

    by_email = {c.email: c for c in after}
    assert [c.email for c in after] == [c.email for c in before if c.email in by_email]  # order
    for copy in before:
        if copy.email not in retried:  # refused for good before: as it was
            assert by_email[copy.email] == copy
        elif copy.email in again:  # refused again: with its new reply
            assert by_email[copy.email] == RefusedCopy(copy.email, 452, "again")
        elif state == OutcomeState.SENT:  # the message reached it
            assert copy.email not in by_email
        else:  # the message did not go: the message's reply
            assert by_email[copy.email] == RefusedCopy(copy.email, code, "the message's reply")
