"""What `batchmail bounces` is told: where the journal is, the IMAP password's variable, and
where its lines go."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from msgspec import Struct, field


def _ignore(_: str) -> None:
    return None


class BounceOptions(Struct):
    state_dir: Path | None = None  # where the job's journal is (default: as for `run`)
    password_env: str | None = None  # the variable holding the IMAP password
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    on_line: Callable[[str], None] = _ignore  # each notification's line, as it is read
