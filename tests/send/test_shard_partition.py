"""Shards and the sending processes' shares: a partition of the job, whatever the sizes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from support import make_job

from batchmail.load.job import load_job
from batchmail.send.pacing import RateLimiter
from batchmail.send.shard import Shard
from batchmail.send.share import WHOLE, Share
from batchmail.state.job_entries import is_of_job


@given(
    shards=st.integers(min_value=1, max_value=12),
    parts=st.integers(min_value=1, max_value=6),
    total=st.integers(min_value=0, max_value=300),
)
def test_shards_and_their_parts_partition_the_job(shards: int, parts: int, total: int) -> None:
    job = set(range(1, total + 1))
    sent: list[int] = []
    for k in range(1, shards + 1):
        shard = Shard(k, shards)
        whole_shard = Share.of(shard)
        mine = {seq for seq in job if shard.holds(seq)}
        # Shard K takes K, K+N, K+2N...: its sequence number less one, modulo N, is K-1.
        assert mine == {seq for seq in job if (seq - 1) % shards == k - 1}
        assert mine == {seq for seq in job if whole_shard.holds(seq)}
        assert whole_shard.size(total) == len(mine)
        built: list[int] = []
        for part in range(parts):
            share = whole_shard.split(part, parts)
            held = {seq for seq in job if share.holds(seq)}
            builds = {seq for seq in job if share.builds(seq)}
            assert held <= builds  # a process builds, in validation, every message it sends
            assert held <= mine
            assert share.first == (part == 0)
            sent += held
            built += builds
        # The parts of every shard validate the whole job between them, each message once.
        assert sorted(built) == sorted(job)
    assert sorted(sent) == sorted(job)  # every recipient sent by exactly one process


@given(parts=st.integers(min_value=1, max_value=8), total=st.integers(min_value=0, max_value=200))
def test_without_shards_a_process_builds_exactly_what_it_sends(parts: int, total: int) -> None:
    for part in range(parts):
        share = WHOLE.split(part, parts)
        for seq in range(1, total + 1):
            assert share.holds(seq) == share.builds(seq)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_shard_1_of_2_of_a_job_at_20_a_second_is_paced_at_10(tmp_path: Path) -> None:
    job = load_job(make_job(tmp_path, rate={"per_second": 20}))
    clock = FakeClock()
    limiter = RateLimiter(Shard(1, 2).paced(job).rate.windows(), clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(30):
        limiter.acquire()
        times.append(clock.now - 1000.0)
    assert times == [0.0] * 10 + [1.0] * 10 + [2.0] * 10


@given(
    job=st.text(min_size=1),
    other=st.text(min_size=1),
    index=st.integers(min_value=1, max_value=99),
    count=st.integers(min_value=1, max_value=99),
)
def test_a_shards_journal_entry_is_of_its_job_and_of_no_other(
    job: str, other: str, index: int, count: int
) -> None:
    entry = Shard(index, count).journal_name(job)

    assert is_of_job(entry, job)
    assert is_of_job(job, job)
    if other != job:
        assert not is_of_job(entry, other)
