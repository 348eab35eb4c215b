"""Pacing with an injected clock: exact, and instant to test."""

from __future__ import annotations

import threading

import pytest

from batchmail.load.settings import RateSettings
from batchmail.send.pacing import QuotaReached, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def send_times(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(round(clock.now - 1000.0, 6))
    return times


def test_per_second_spaces_messages_in_a_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(2, 1.0)], clock=clock, sleep=clock.sleep)
    assert send_times(limiter, clock, 6) == [0, 0, 1, 1, 2, 2]


def test_two_limits_both_hold() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(3, 1.0), (4, 60.0)], clock=clock, sleep=clock.sleep)
    assert send_times(limiter, clock, 6) == [0, 0, 0, 1, 60, 60]


def test_batches_pause_between_them() -> None:
    clock = FakeClock()
    limiter = RateLimiter([], clock=clock, sleep=clock.sleep, batch_size=3, batch_pause=10)
    assert send_times(limiter, clock, 7) == [0, 0, 0, 10, 10, 10, 20]


def test_slow_sending_needs_no_extra_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 5
    limiter.acquire()
    assert clock.slept == []


def test_a_used_up_daily_quota_stops_instead_of_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(5, 86400.0)], clock=clock, sleep=clock.sleep)
    assert send_times(limiter, clock, 5) == [0, 0, 0, 0, 0]
    with pytest.raises(QuotaReached) as stop:
        limiter.acquire()
    assert stop.value.next_at == 1000.0 + 86400
    assert clock.slept == []


def test_quota_counts_messages_of_earlier_runs() -> None:
    clock = FakeClock()
    earlier = [1000.0 - 3600 * h for h in (1, 2, 3)]  # three sent in the last day
    limiter = RateLimiter([(5, 86400.0)], clock=clock, sleep=clock.sleep, history=earlier)
    send_times(limiter, clock, 2)
    with pytest.raises(QuotaReached) as stop:
        limiter.acquire()
    assert stop.value.next_at == earlier[-1] + 86400  # when the oldest leaves the window


def test_threads_share_the_limit() -> None:
    clock = FakeClock()
    lock = threading.Lock()
    slots: list[float] = []

    def sleep(seconds: float) -> None:
        with lock:
            slots.append(seconds)

    limiter = RateLimiter([(5, 1.0)], clock=clock, sleep=sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 messages, 5 per second, no time passing: slots at +0 (5), +1, +2, +3 (5 each)
    assert sorted(round(s) for s in slots) == [1] * 5 + [2] * 5 + [3] * 5


def test_fractional_rates() -> None:
    assert RateSettings(per_second=0.5).windows() == [(1, 2.0)]
    assert RateSettings(per_minute=2.5, per_day=2000).windows() == [(2, 60.0), (2000, 86400.0)]
