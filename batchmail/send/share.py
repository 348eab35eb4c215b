"""Which of a job's recipients one send loop takes, when several send the job together."""

from __future__ import annotations

from msgspec import Struct


class Share(Struct, frozen=True):
    """The recipients whose sequence number modulo `count` is `index`: one of `count` shares
    that take the job's recipients in turn. The whole job is the share (0, 1)."""

    index: int = 0
    count: int = 1

    def holds(self, seq: int) -> bool:
        return seq % self.count == self.index

    @property
    def first(self) -> bool:
        """The share that reports what every share meets: refused rows, warnings."""
        return self.index == 0


WHOLE = Share()
