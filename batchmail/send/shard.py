"""Shards: one of N processes, often on N machines, each sending a slice of one job.

A shard K/N takes the recipients K, K+N, K+2N... of the job's order (sequence numbers count
from 1). Each shard validates the whole job, keeps a journal entry and a lock of its own, and
paces itself at 1/N of every rate limit, so that N shards together keep the job's pace.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct, structs

from batchmail.errors import InvalidJobError, invalid
from batchmail.load.settings import Job, RateSettings
from batchmail.state.job_entries import shard_entry

AUTO = "auto"
# The CI engines' own variables: GitLab's `parallel:` counts from 1, a Kubernetes Indexed Job
# from 0 and says nothing of the count.
GITLAB_INDEX, GITLAB_TOTAL = "CI_NODE_INDEX", "CI_NODE_TOTAL"
KUBERNETES_INDEX = "JOB_COMPLETION_INDEX"


class Shard(Struct, frozen=True):
    """Shard `index` of `count` (1 <= index <= count)."""

    index: int
    count: int

    def holds(self, seq: int) -> bool:
        return seq % self.count == self.index % self.count

    def journal_name(self, job: str) -> str:
        """The shard's own entry in the journal, and its own lock: shards of one job on one
        machine neither block each other nor take each other's recipients for sent."""
        return shard_entry(job, self.index, self.count)

    @property
    def note(self) -> str:
        return f"shard {self.index}/{self.count}: rate limits divided by {self.count}"

    def paced(self, job: Job) -> Job:
        """The job with every rate limit divided among the shards. Connections are not: each
        shard opens its own, usually from its own machine."""
        rate, n = job.rate, self.count
        divided = RateSettings(
            per_second=_divided(rate.per_second, n),
            per_minute=_divided(rate.per_minute, n),
            per_hour=_divided(rate.per_hour, n),
            per_day=_divided(rate.per_day, n),
            # The job's batch, shared out: N shards together send a batch per pause.
            batch_size=max(1, rate.batch_size // n) if rate.batch_size else None,
            batch_pause=rate.batch_pause,
            connections=rate.connections,
        )
        return structs.replace(job, rate=divided)


def _divided(limit: float | None, count: int) -> float | None:
    return None if limit is None else limit / count


def chosen_shard(text: str | None, count: int | None, environ: Mapping[str, str]) -> Shard | None:
    """`--shard K/N`, or `--shard auto` with the CI's variables (and `--shard-count N`)."""
    if text is None:
        if count is not None:
            raise _usage("--shard-count", "goes with --shard auto")
        return None
    if text.strip() == AUTO:
        return _from_environment(count, environ)
    if count is not None:
        raise _usage("--shard-count", "goes with --shard auto, not with --shard K/N")
    index, slash, total = text.partition("/")
    if not (slash and index.strip().isdigit() and total.strip().isdigit()):
        raise _usage("--shard", f"'{text}' is not K/N (such as 1/3) or auto")
    shard = Shard(int(index), int(total))
    if shard.count < 1 or not 1 <= shard.index <= shard.count:
        raise _usage("--shard", f"'{text}': shard K of N needs 1 <= K <= N")
    return shard


def _from_environment(count: int | None, environ: Mapping[str, str]) -> Shard:
    gitlab = (environ.get(GITLAB_INDEX, "").strip(), environ.get(GITLAB_TOTAL, "").strip())
    kubernetes = environ.get(KUBERNETES_INDEX, "").strip()
    found: list[Shard] = []
    if any(gitlab):
        index, total = (_integer(name, value) for name, value in zip(
            (GITLAB_INDEX, GITLAB_TOTAL), gitlab, strict=True))  # fmt: skip
        if count is not None and count != total:
            raise _auto(f"{GITLAB_TOTAL}={total} but --shard-count says {count}")
        found.append(_from(index, total, f"{GITLAB_INDEX}={index} of {GITLAB_TOTAL}={total}"))
    if kubernetes:
        if count is None:
            raise _auto(f"{KUBERNETES_INDEX} is set: give the job's completions as --shard-count N")
        index = _integer(KUBERNETES_INDEX, kubernetes) + 1  # index 0 is shard 1/N
        found.append(
            _from(index, count, f"{KUBERNETES_INDEX}={index - 1} of --shard-count {count}")
        )
    if not found:
        raise _auto(
            f"none of {GITLAB_INDEX}/{GITLAB_TOTAL} (GitLab parallel:) or {KUBERNETES_INDEX} "
            "with --shard-count N (Kubernetes Indexed Job) is set"
        )
    if len(set(found)) > 1:
        raise _auto(
            f"{GITLAB_INDEX}/{GITLAB_TOTAL} and {KUBERNETES_INDEX} name different shards "
            f"({found[0].index}/{found[0].count} and {found[1].index}/{found[1].count})"
        )
    return found[0]


def _integer(name: str, value: str) -> int:
    if not value.isdigit():
        raise _auto(f"{name}='{value}' is not a whole number")
    return int(value)


def _from(index: int, count: int, said: str) -> Shard:
    if count < 1 or not 1 <= index <= count:
        raise _auto(f"{said} is no shard (1 <= K <= N)")
    return Shard(index, count)


def _auto(message: str) -> InvalidJobError:
    return _usage("--shard auto", message)


def _usage(option: str, message: str) -> InvalidJobError:
    return invalid(option, message)
