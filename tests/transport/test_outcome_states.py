"""What a transport reports is a recipient's delivery state: the runner hands it to the journal
as it is, with no conversion per message."""

from __future__ import annotations

import msgspec

from batchmail.state.states import DELIVERED, DeliveryState
from batchmail.transport.contract import DELIVERED_OUTCOMES, Outcome, OutcomeState


def test_every_outcome_a_transport_reports_is_a_delivery_state() -> None:
    for state in OutcomeState:
        assert DeliveryState(state.value).name == state.name
        assert state == DeliveryState(state.value)
        assert hash(state) == hash(DeliveryState(state.value))  # the same in sets and maps


def test_a_transport_delivers_what_a_run_counts_as_delivered() -> None:
    assert {str(state) for state in DELIVERED_OUTCOMES} == {str(state) for state in DELIVERED}


def test_an_outcome_is_written_as_its_plain_value() -> None:
    outcome = Outcome(OutcomeState.DEFERRED, 421, "4.7.0 try later")

    assert (
        msgspec.json.encode(outcome)
        == b'{"state":"deferred","code":421,"response":"4.7.0 try later",'
        b'"sender_refused":false,"refused":[]}'
    )
    assert f"{outcome.state}" == "deferred"
