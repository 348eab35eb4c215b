"""Pacing: sliding-window limits, batch pauses and quotas, with an injected clock and sleep."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

Clock = Callable[[], float]
Sleep = Callable[[float], object]

# Windows this long are quotas: waiting them out inside one run is not useful, so the run stops
# and says when the next message may go.
QUOTA_SPAN = 3600.0


class QuotaReached(Exception):
    def __init__(self, limit: int, span: float, next_at: float):
        super().__init__(limit, span, next_at)
        self.limit = limit
        self.span = span
        self.next_at = next_at  # clock time at which the next message may go


class RateLimiter:
    """At most N messages in any window of each span, counted across all threads.

    Each caller reserves the earliest slot the limits allow and sleeps until it, so concurrent
    sessions get successive slots rather than racing for the same one.
    """

    def __init__(
        self,
        windows: Iterable[tuple[int, float]],
        *,
        clock: Clock,
        sleep: Sleep,
        batch_size: int | None = None,
        batch_pause: float = 0.0,
        history: Iterable[float] = (),
    ):
        self.windows = sorted(windows, key=lambda w: w[1])
        self.clock = clock
        self.sleep = sleep
        self.batch_size = batch_size
        self.batch_pause = batch_pause
        self._logs = [deque[float](maxlen=limit) for limit, _ in self.windows]
        for sent_at in sorted(history):
            for (_, span), log in zip(self.windows, self._logs, strict=True):
                if span >= QUOTA_SPAN:
                    log.append(sent_at)
        self._count = 0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the next slot. Raises QuotaReached instead of waiting out an hour or a day."""
        slot = self._reserve()
        delay = slot - self.clock()
        if delay > 0:
            self.sleep(delay)

    def _reserve(self) -> float:
        with self._lock:
            now = self.clock()
            slot = now
            if self.batch_size and self._count and self._count % self.batch_size == 0:
                slot = max(slot, self._last + self.batch_pause)
            for (limit, span), log in zip(self.windows, self._logs, strict=True):
                if len(log) == limit and log[0] + span > slot:
                    if span >= QUOTA_SPAN:
                        raise QuotaReached(limit, span, log[0] + span)
                    slot = log[0] + span
            for log in self._logs:
                log.append(slot)
            self._count += 1
            self._last = slot
            return slot
