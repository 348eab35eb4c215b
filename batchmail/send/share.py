"""Which of a job's recipients one send loop takes, when several send the job together: the
job's shards (often on several machines), each split over its sending processes."""

from __future__ import annotations

from msgspec import Struct

from batchmail.send.shard import Shard


class Share(Struct, frozen=True):
    """Part `part` of `parts` of shard `shard` of `shards` (1-based, see send/shard.py).

    A shard takes the recipients K, K+N, K+2N... (N shards); its parts take those in turn, so
    a share is the recipients whose sequence number modulo `count` is `index`. The validation
    pass covers the whole job in every shard: each part builds every N-th run of N recipients,
    which holds the part's own."""

    part: int = 0
    parts: int = 1
    shard: int = 1
    shards: int = 1

    @classmethod
    def of(cls, shard: Shard | None) -> Share:
        return WHOLE if shard is None else cls(0, 1, shard.index, shard.count)

    @property
    def index(self) -> int:
        return (self.shard + self.shards * self.part) % self.count

    @property
    def count(self) -> int:
        return self.shards * self.parts

    def holds(self, seq: int) -> bool:
        """Whether this share sends recipient `seq`."""
        return seq % self.count == self.index

    def size(self, job_total: int) -> int:
        """How many of a job's `job_total` recipients the share sends."""
        first = self.index or self.count
        return 0 if job_total < first else (job_total - first) // self.count + 1

    def builds(self, seq: int) -> bool:
        """Whether this share's validation pass builds recipient `seq`'s message: the parts
        of a shard together build the whole job."""
        return (seq - 1) // self.shards % self.parts == self.part

    def split(self, part: int, parts: int) -> Share:
        """The share's part `part` of `parts`: one sending process's."""
        return Share(part, parts, self.shard, self.shards)

    @property
    def first(self) -> bool:
        """The share that reports what every share meets: refused rows, warnings."""
        return self.part == 0


WHOLE = Share()
