"""How a run ended, as its status in the journal and the report, and as an exit code."""

from __future__ import annotations

from batchmail.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TEMPFAIL
from batchmail.send.halt import Halt, HaltReason
from batchmail.state.states import UNDELIVERED, DeliveryState, RunStatus

# A run stopped by a halt ends with its status; one that lost its connection midway simply has
# recipients left.
_HALT_STATUS = {
    HaltReason.INTERRUPTED: RunStatus.INTERRUPTED,
    HaltReason.QUOTA: RunStatus.QUOTA,
    HaltReason.CONNECTION: RunStatus.INCOMPLETE,
    HaltReason.SENDER_REFUSED: RunStatus.SENDER_REFUSED,
    HaltReason.ERROR: RunStatus.ERROR,
}
_TO_FINISH = (DeliveryState.DEFERRED, DeliveryState.UNKNOWN, DeliveryState.PENDING)


def run_status(halt: Halt | None, summary: dict[str, int], connect_failed: bool) -> RunStatus:
    if connect_failed:
        return RunStatus.CONNECTION_FAILED
    if halt is not None:
        return _HALT_STATUS[halt.reason]
    unfinished = sum(summary[state] for state in UNDELIVERED)
    return RunStatus.INCOMPLETE if unfinished else RunStatus.COMPLETED


def exit_code(halt: Halt | None, summary: dict[str, int]) -> int:
    # Deferred work outranks permanent failures: a script that re-runs while the exit code is
    # 75 finishes the deferred recipients before it sees the failures.
    if halt is not None and halt.reason == HaltReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if halt is not None and halt.reason == HaltReason.SENDER_REFUSED:
        return EXIT_FAILED
    if any(summary[state] for state in _TO_FINISH):
        return EXIT_TEMPFAIL
    if summary[DeliveryState.FAILED]:
        return EXIT_FAILED
    return EXIT_OK
