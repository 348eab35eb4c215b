"""The per-recipient results: a JSON report written atomically, and the summary line."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec
from msgspec import Struct, field

from batchmail.errors import StateError
from batchmail.state.records import Delivery, report_status
from batchmail.state.states import REPORTED, RunStatus


class ReportHead(Struct):
    job: str
    dry_run: bool
    started: float
    finished: float
    status: RunStatus
    run_id: str | None = None
    message: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: dict[str, Any] | None = None  # the content checks' count, by code, and the job's
    # A shard's report: {"index": K, "count": N}, the whole job's recipients, and the digest
    # of its inputs, the same in every shard of one job (`merge` checks them).
    shard: dict[str, int] | None = None
    job_total: int | None = None
    digest: str | None = None


def full_summary(counts: Mapping[str, int]) -> dict[str, int]:
    summary = {"total": sum(counts.values())}
    summary.update({state.value: counts.get(state, 0) for state in REPORTED})
    return summary


def recipient_entry(delivery: Delivery, message_id: str | None) -> dict[str, Any]:
    return {
        "email": delivery.email,
        "status": report_status(delivery),
        "smtp_code": delivery.code,
        "smtp_response": delivery.response,
        "message_id": message_id if delivery.attempts else None,
        "attempts": delivery.attempts,
        "size": delivery.size,
        "attachments": delivery.attachments,
        "refused": delivery.refused,  # copies (cc, bcc) the server refused; always a list
    }


def write_report(
    path: Path, head: ReportHead, summary: Mapping[str, int], entries: Iterable[dict[str, Any]]
) -> None:
    """Stream the report to `path`: one recipient at a time, never the whole list in memory."""
    with _atomic_target(path) as out:
        fields: dict[str, Any] = {
            "job": head.job,
            "run_id": head.run_id,
            "dry_run": head.dry_run,
            "status": head.status,
            "message": head.message,
            "started": _iso(head.started),
            "finished": _iso(head.finished),
            "summary": dict(summary),
        }
        if head.errors:
            fields["errors"] = head.errors
        if head.warnings is not None:
            fields["warnings"] = head.warnings
        extra = {"shard": head.shard, "job_total": head.job_total, "digest": head.digest}
        fields.update((key, value) for key, value in extra.items() if value is not None)
        out.write(msgspec.json.encode(fields)[:-1] + b',"recipients":[')
        for index, entry in enumerate(entries):
            out.write((b"\n  " if index == 0 else b",\n  ") + msgspec.json.encode(entry))
        out.write(b"\n]}\n")


@contextmanager
def _atomic_target(path: Path) -> Iterator[IO[bytes]]:
    """A regular file is replaced atomically (temp file, fsync, rename); a device or FIFO
    (`/dev/stdout`) is written in place, since it cannot be renamed over."""
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            with path.open("wb") as out:
                yield out
                out.flush()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise StateError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise StateError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def summary_line(
    job: str, summary: Mapping[str, int], report: Path | None, note: str | None = None
) -> str:
    """`note`: said after the counts (a shard's: `shard 1/2: rate limits divided by 2`)."""
    counts = ", ".join(f"{summary[s]} {s}" for s in REPORTED if summary.get(s))
    where = f" (report: {report})" if report else ""
    said = f"; {note}" if note else ""
    return f"{job}: {summary['total']} recipients: {counts or 'nothing to do'}{said}{where}"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
