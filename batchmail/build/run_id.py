"""Run ids: a run's Message-IDs are made from its id, so that a message sent again after a crash
keeps its Message-ID, and receivers can de-duplicate it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_run_id(now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


# What the validation pass builds Message-IDs with, before any run exists: as long as a real id.
STAND_IN_RUN_ID = "0" * len(new_run_id(0.0))
