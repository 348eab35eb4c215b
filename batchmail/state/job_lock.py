"""One batchmail process per job at a time."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from batchmail.errors import EXIT_TEMPFAIL, BatchmailError, StateError


class JobLocked(BatchmailError):
    """Another batchmail process is working on the same job: try again when it is done."""

    exit_code = EXIT_TEMPFAIL


@contextmanager
def job_lock(state_dir: Path, job: str) -> Iterator[None]:
    """One batchmail process per job at a time; the OS drops the lock if the process dies."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (state_dir / f"{job}.lock").open("a")
    except OSError as exc:
        raise StateError(f"cannot create the state directory {state_dir}: {exc.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLocked(
                f"another batchmail process is running job '{job}' "
                f"(lock: {state_dir / (job + '.lock')}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
