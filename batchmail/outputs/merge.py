"""`batchmail merge`: one report, and the CI outputs, from the reports of a job's shards.

Every shard's report is checked against the others before anything is written: one job, one
set of inputs, one shard count, every shard once, and every recipient of the job in exactly
one report. The merged report is the one a single run of the whole job would have written,
without `shard`, and with `job_total` kept; JUnit and the failed CSV come from the same
writers as `run`'s.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from msgspec import Struct, field

from batchmail.errors import InvalidJobError, invalid
from batchmail.outputs.report import ReportHead, full_summary, recipient_entry, write_report
from batchmail.send.run_status import counts_exit_code
from batchmail.state.records import Delivery, RefusedCopy
from batchmail.state.states import DeliveryState, RunStatus

# When the shards ended differently, the merged report takes the most telling status.
_SEVERITY = (
    RunStatus.ERROR,
    RunStatus.CONNECTION_FAILED,
    RunStatus.SENDER_REFUSED,
    RunStatus.QUOTA,
    RunStatus.INTERRUPTED,
    RunStatus.INCOMPLETE,
    RunStatus.COMPLETED,
)
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_T = TypeVar("_T")

if TYPE_CHECKING:
    from batchmail.build.content_checks import ContentWarning
    from batchmail.build.content_verdict import ContentFindings


class _Warning(Struct):
    """A content warning as a report gives it."""

    code: str
    text: str


class _Entry(Struct):
    """One recipient as a shard's report gives it."""

    seq: int
    email: str
    status: DeliveryState
    smtp_code: int | None = None
    smtp_response: str | None = None
    message_id: str | None = None
    attempts: int = 0
    size: int | None = None
    attachments: list[str] = field(default_factory=list)
    refused: list[RefusedCopy] = field(default_factory=list)
    warnings: list[_Warning] = field(default_factory=list)
    fields: dict[str, Any] | None = None  # the row's, for the failed CSV


class _ShardNumbers(Struct):
    index: int
    count: int


class _Report(Struct):
    """A shard's report, as `run --shard K/N` writes it."""

    job: str
    dry_run: bool
    status: RunStatus
    started: str
    finished: str
    recipients: msgspec.Raw  # read once the report is known to be a shard's
    run_id: str | None = None
    message: str | None = None
    errors: list[str] = field(default_factory=list)
    # The content checks' counts: of the whole job, which every shard validates.
    warnings: dict[str, Any] | None = None
    shard: _ShardNumbers | None = None
    job_total: int | None = None
    digest: str | None = None


class _Shard(Struct):
    path: Path
    report: _Report
    index: int
    count: int
    recipients: list[_Entry]  # in the job's order

    @property
    def name(self) -> str:
        return f"shard {self.index}/{self.count}"


class Merged(Struct, frozen=True):
    """What `merge` wrote, and the exit code that a run of the whole job would have had."""

    job: str
    status: RunStatus
    summary: dict[str, int]
    exit_code: int
    report: Path
    message: str | None


def merge_reports(
    paths: Sequence[Path], out: Path, junit: Path | None = None, failed_csv: Path | None = None
) -> Merged:
    """Check the shards' reports against each other, then write the job's report to `out`, and
    JUnit and the failed CSV when asked. InvalidJobError (exit 2), naming the files, when the
    reports do not make up one job."""
    if not paths:
        raise invalid("merge", "no report given: pass every shard's report")
    shards = _in_order([_read(path) for path in paths])
    _check_recipients(shards)  # before anything is written
    first = shards[0].report
    counts: Counter[str] = Counter(entry.status for _, entry in _merged(shards))
    summary = full_summary(counts)
    status = _status(shards)
    message = "; ".join(f"{s.name}: {s.report.message}" for s in shards if s.report.message)
    head = ReportHead(
        first.job,
        first.dry_run,
        min(_timestamp(s.report.started) for s in shards),
        max(_timestamp(s.report.finished) for s in shards),
        status,
        message=message or None,
        warnings=first.warnings,
        job_total=first.job_total,
    )
    entries = (_entry(e) for _, e in _merged(shards))
    write_report(out, head, summary, entries)
    _write_ci_outputs(shards, summary, junit, failed_csv)
    waiting = sum(c.waiting for _, e in _merged(shards) for c in e.refused)
    return Merged(first.job, status, summary, counts_exit_code(counts, waiting), out, head.message)


def _read(path: Path) -> _Shard:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise invalid(str(path), f"cannot read the report: {exc.strerror}") from None
    report = _decoded(path, data, _Report)
    if report.status == RunStatus.INVALID:
        raise invalid(str(path), "the job was invalid in this run: nothing was sent to merge")
    if report.shard is None or report.job_total is None or report.digest is None:
        raise invalid(str(path), "a report of the whole job, not of a shard (run --shard K/N)")
    recipients = sorted(_decoded(path, report.recipients, list[_Entry]), key=lambda e: e.seq)
    return _Shard(path, report, report.shard.index, report.shard.count, recipients)


def _decoded(path: Path, data: bytes | msgspec.Raw, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(str(path), f"not a batchmail report: {exc}") from None
    except msgspec.DecodeError as exc:
        raise invalid(str(path), f"not JSON: {exc}") from None


def _in_order(shards: list[_Shard]) -> list[_Shard]:
    """The shards by index, once they are known to be those of one job, every one once."""
    first = shards[0]
    for other in shards[1:]:
        _same_job(first, other)
    by_index: dict[int, _Shard] = {}
    for shard in shards:
        if shard.index in by_index:
            raise invalid(
                str(shard.path), f"{shard.name} given twice: {by_index[shard.index].path} too"
            )
        by_index[shard.index] = shard
    missing = [k for k in range(1, first.count + 1) if k not in by_index]
    if missing:
        given = ", ".join(f"{s.path} ({s.index}/{s.count})" for s in shards)
        absent = ", ".join(f"{k}/{first.count}" for k in missing)
        raise invalid("merge", f"shard {absent} missing: the reports given are {given}")
    return [by_index[k] for k in sorted(by_index)]


def _same_job(first: _Shard, other: _Shard) -> None:
    one, two = first.report, other.report
    pair = f"{first.path} and {other.path}"
    if one.job != two.job:
        raise invalid("merge", f"{pair} are reports of different jobs ({one.job}, {two.job})")
    if first.count != other.count:
        raise invalid(
            "merge",
            f"{pair} split the job differently ({first.name}, {other.name}): "
            "merge the shards of one split",
        )
    if one.dry_run != two.dry_run:
        raise invalid("merge", f"{pair}: one is a dry run, the other is not")
    if (one.digest, one.job_total) != (two.digest, two.job_total):
        raise invalid(
            "merge",
            f"{pair} were run with different inputs (the recipients, templates or "
            "attachments changed between them)",
        )


def _check_recipients(shards: list[_Shard]) -> None:
    """InvalidJobError for a recipient in no report, in two, beyond the job's, or in the report
    of a shard that does not send it."""
    total, count = shards[0].report.job_total or 0, shards[0].count
    expected, last = 1, shards[0]
    for shard, entry in _merged(shards):
        seq = entry.seq
        if seq == expected - 1:
            where = (
                f"twice in {last.path}" if last is shard else f"in {last.path} and in {shard.path}"
            )
            raise invalid("merge", f"recipient {seq} ({entry.email}) is {where}")
        if seq > total:
            raise invalid(str(shard.path), f"recipient {seq} is beyond the job's {total}")
        if seq != expected:
            raise _missing(shards, expected, seq - 1)
        last, expected = shard, expected + 1
    if expected <= total:
        raise _missing(shards, expected, total)
    for shard in shards:
        for entry in shard.recipients:
            if entry.seq % count != shard.index % count:
                raise invalid(
                    str(shard.path), f"recipient {entry.seq} ({entry.email}) is not {shard.name}'s"
                )


def _merged(shards: list[_Shard]) -> Iterator[tuple[_Shard, _Entry]]:
    """Every recipient in the job's order, with the shard whose report gave it."""

    def entries(shard: _Shard) -> Iterator[tuple[int, int, int, _Shard, _Entry]]:
        for position, entry in enumerate(shard.recipients):
            yield entry.seq, shard.index, position, shard, entry

    for _, _, _, shard, entry in heapq.merge(*(entries(s) for s in shards)):
        yield shard, entry


def _missing(shards: list[_Shard], first: int, last: int) -> InvalidJobError:
    total = shards[0].report.job_total
    owner = shards[(first - 1) % shards[0].count]
    which = f"recipient {first} is" if first == last else f"recipients {first} to {last} are"
    return invalid(
        "merge",
        f"{which} in no report ({total} in the job; {owner.path}, {owner.name}, should "
        f"hold recipient {first})",
    )


def _status(shards: list[_Shard]) -> RunStatus:
    return min((s.report.status for s in shards), key=_SEVERITY.index)


def _timestamp(text: str) -> float:
    try:
        return datetime.strptime(text, _TIME).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _entry(entry: _Entry) -> dict[str, Any]:
    """The entry as a run of the whole job writes it."""
    merged = recipient_entry(_delivery(entry), entry.message_id)
    merged["warnings"] = [{"code": w.code, "text": w.text} for w in entry.warnings]
    return merged


def _delivery(entry: _Entry) -> Delivery:
    return Delivery(
        entry.seq,
        entry.email,
        entry.status,
        entry.smtp_code,
        entry.smtp_response,
        entry.attempts,
        entry.size,
        entry.attachments,
        touched_now=True,  # the status is the report's already: `skipped` stays so
        refused=tuple(entry.refused),
    )


def _write_ci_outputs(
    shards: list[_Shard], summary: dict[str, int], junit: Path | None, failed_csv: Path | None
) -> None:
    if not (junit or failed_csv):
        return
    from batchmail.outputs.ci import write_failed_csv, write_junit  # noqa: PLC0415 - see run_outputs

    job = shards[0].report.job
    if junit:
        deliveries = (_delivery(e) for _, e in _merged(shards))
        write_junit(junit, job, summary, deliveries, _content(shards))
    if failed_csv:
        rows = ((e.fields or {"email": e.email}, _delivery(e)) for _, e in _merged(shards))
        write_failed_csv(failed_csv, rows)


def _content(shards: list[_Shard]) -> ContentFindings:
    """The content warnings, for JUnit: each message's from its entry, the job's from the head."""
    from batchmail.build.content_checks import ContentWarning  # noqa: PLC0415 - with JUnit's
    from batchmail.build.content_verdict import ContentFindings  # noqa: PLC0415

    def warning(code: str, recipient: str, text: str) -> ContentWarning:
        said = {"code": code, "recipient": recipient, "text": text}
        try:
            return msgspec.convert(said, ContentWarning)
        except msgspec.ValidationError:
            raise invalid("merge", f"a report gives an unknown content warning '{code}'") from None

    findings = ContentFindings()
    for _, entry in _merged(shards):
        if entry.warnings:
            mine = (warning(w.code, entry.email, w.text) for w in entry.warnings)
            findings.messages[entry.seq] = tuple(mine)
    job = (shards[0].report.warnings or {}).get("job") or []
    findings.job = tuple(warning(w["code"], "", w["text"]) for w in job)
    return findings
