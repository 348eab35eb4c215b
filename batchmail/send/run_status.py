"""How a run's invocation ended: its status in the journal and the report, and its exit code."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from batchmail.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TEMPFAIL, ConnectFailure
from batchmail.send.halt import Halt, HaltReason
from batchmail.state.records import Run
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


class Ending(Struct, frozen=True):
    """The run, why its send loop stopped early if it did, and its recipients' counts."""

    run: Run
    halt: Halt | None
    counts: Mapping[str, int]  # per report status
    sent_now: int  # messages that went in this invocation
    copies_waiting: int = 0  # copies of sent messages the server refused for now

    @property
    def connect_failed(self) -> bool:
        """No session could be opened: nothing was sent."""
        return (
            self.halt is not None
            and self.halt.reason == HaltReason.CONNECTION
            and not self.sent_now
        )

    @property
    def message(self) -> str | None:
        return self.halt.message if self.halt is not None else None

    @property
    def status(self) -> RunStatus:
        if self.connect_failed:
            return RunStatus.CONNECTION_FAILED
        if self.halt is not None:
            return _HALT_STATUS[self.halt.reason]
        unfinished = sum(self.counts.get(state, 0) for state in UNDELIVERED)
        return RunStatus.INCOMPLETE if unfinished or self.copies_waiting else RunStatus.COMPLETED

    @property
    def exit_code(self) -> int:
        # Deferred work outranks permanent failures: a script that re-runs while the exit code
        # is 75 finishes the deferred recipients before it sees the failures.
        halt = self.halt
        if halt is not None and halt.reason == HaltReason.INTERRUPTED:
            return EXIT_INTERRUPTED
        if halt is not None and halt.reason == HaltReason.SENDER_REFUSED:
            return EXIT_FAILED
        return counts_exit_code(self.counts, self.copies_waiting)

    def raise_failure(self) -> None:
        """The error that stopped the run, or the connection that never opened, raised."""
        halt = self.halt
        if halt is not None and halt.reason == HaltReason.ERROR and halt.error is not None:
            raise halt.error
        if self.connect_failed and halt is not None:
            raise ConnectFailure(f"{halt.message}; nothing was sent")


def counts_exit_code(counts: Mapping[str, int], copies_waiting: int = 0) -> int:
    """The exit code that recipients' counts call for, when nothing stopped the run."""
    if copies_waiting or any(counts.get(state, 0) for state in _TO_FINISH):
        return EXIT_TEMPFAIL
    if counts.get(DeliveryState.FAILED, 0):
        return EXIT_FAILED
    return EXIT_OK
