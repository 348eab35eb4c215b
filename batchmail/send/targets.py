"""Where a run goes: the transports its messages take, the journal's folder, the report."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

from msgspec import Struct

from batchmail.load.settings import Job
from batchmail.transport.contract import Transport
from batchmail.transport.credentials import Credentials
from batchmail.transport.folder import FolderTransport
from batchmail.transport.oauth2 import credentials_for
from batchmail.transport.smtp import SmtpTransport


class Target(Struct, frozen=True):
    """Where a run's messages, journal and report go."""

    transports: Callable[[], Transport]
    state_dir: Path
    report: Path
    out: Path | None = None  # a dry run's previews
    credentials: Credentials | None = None  # prepared once the job is valid


def preview_target(job: Job, out: Path | None, report: Path | None, stack: ExitStack) -> Target:
    """A dry run: previews into a folder, with a journal of its own that is gone afterwards."""
    folder = out or job.path.parent / "preview"
    state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batchmail-")))
    return Target(
        lambda: FolderTransport(folder), state_dir, report or folder / "report.json", folder
    )


def sending_target(
    job: Job,
    state_dir: Path,
    report: Path,
    environ: Mapping[str, str],
    transports: Callable[[], Transport] | None = None,
) -> Target:
    """A run that sends: through the job's SMTP server, or the caller's `transports`."""
    if transports is not None:
        return Target(transports, state_dir, report)
    credentials = credentials_for(job.smtp, environ)
    return Target(
        lambda: SmtpTransport(job.smtp, credentials), state_dir, report, credentials=credentials
    )


def default_state_dir(job: Job, chosen: Path | None, environ: Mapping[str, str]) -> Path:
    """The option's folder, else $BATCHMAIL_STATE_DIR, else .batchmail/ beside the job file."""
    found = chosen or environ.get("BATCHMAIL_STATE_DIR")
    return Path(found) if found else job.path.parent / ".batchmail"
