"""Why a run stopped before every recipient was tried."""

from __future__ import annotations

from enum import StrEnum

from msgspec import Struct


class HaltReason(StrEnum):
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, or a caller's stop event
    QUOTA = "quota"  # a per-hour or per-day limit reached
    CONNECTION = "connection"  # a session could not be opened
    SENDER_REFUSED = "sender_refused"  # the same permanent refusal of the sender, again and again
    ERROR = "error"  # an error the run cannot go on after (a full disk, a bug)


class Halt(Struct):
    """Why the run stopped before every recipient was tried."""

    reason: HaltReason
    message: str
    error: BaseException | None = None
