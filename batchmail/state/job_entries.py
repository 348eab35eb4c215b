"""A job's entries in the journal: its own, and one per shard when it is sent in shards
(`run --shard K/N`), so that what reads the journal for the job (`bounces`) finds every shard's
messages too."""

from __future__ import annotations

import re

_SHARD_SUFFIX = re.compile(r"\.shard-[1-9][0-9]*-of-[1-9][0-9]*")


def shard_entry(job: str, index: int, count: int) -> str:
    """The journal entry (and lock) of shard `index` of `count` of the job."""
    return f"{job}.shard-{index}-of-{count}"


def is_of_job(entry: str, job: str) -> bool:
    """Whether a journal entry is the job's own or one of its shards'."""
    return entry == job or (
        entry.startswith(job) and _SHARD_SUFFIX.fullmatch(entry, len(job)) is not None
    )
