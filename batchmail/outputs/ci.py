"""Outputs for CI beside the JSON report: JUnit XML, a CSV of who was not reached, a Markdown
step summary. Each is streamed from the journal, like the report."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from batchmail.build.content_checks import ContentWarning
from batchmail.build.content_verdict import ContentFindings
from batchmail.errors import StateError
from batchmail.outputs.report import ReportHead
from batchmail.state.records import Delivery, RefusedCopy, report_status
from batchmail.state.states import UNDELIVERED, DeliveryState

_LISTED_IN_SUMMARY = 50
_SKIPPED = (DeliveryState.PENDING, DeliveryState.SKIPPED, DeliveryState.SUPPRESSED)


def write_junit(
    path: Path,
    job: str,
    summary: Mapping[str, int],
    deliveries: Iterable[Delivery],
    content: ContentFindings | None = None,
) -> None:
    """One testcase per recipient: `failure` for a permanent refusal, `error` for a message not
    delivered yet (deferred, unknown), `skipped` for one never tried, delivered earlier or
    suppressed. Content warnings go to `<system-out>`, which CI viewers show: a message's in
    its testcase, the job's in the suite."""
    content = content or ContentFindings()
    failures = summary.get(DeliveryState.FAILED, 0)
    errors = summary.get(DeliveryState.DEFERRED, 0) + summary.get(DeliveryState.UNKNOWN, 0)
    skipped = sum(summary.get(state, 0) for state in _SKIPPED)
    with _open(path, "junit") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(
            f"<testsuites><testsuite name={quoteattr('batchmail ' + job)} "
            f'tests="{summary.get("total", 0)}" failures="{failures}" errors="{errors}" '
            f'skipped="{skipped}">\n'
        )
        for delivery in deliveries:
            out.write(_testcase(job, delivery, content.of(delivery.seq)))
        if content.job:
            out.write(f"  <system-out>{escape(_warning_lines(content.job))}</system-out>\n")
        out.write("</testsuite></testsuites>\n")


def _testcase(job: str, delivery: Delivery, warnings: Sequence[ContentWarning] = ()) -> str:
    status = report_status(delivery)
    head = f"  <testcase classname={quoteattr(job)} name={quoteattr(delivery.email)}"
    reply = _reply(delivery)
    if status == DeliveryState.FAILED:
        kind = str(delivery.code or status)
        inner = f"<failure type={quoteattr(kind)} message={quoteattr(reply)}/>"
    elif status in (DeliveryState.DEFERRED, DeliveryState.UNKNOWN):
        inner = f"<error type={quoteattr(status)} message={quoteattr(reply)}/>"
    elif status in _SKIPPED:
        inner = f"<skipped message={quoteattr(_skip_reason(delivery, status))}/>"
    else:
        inner = ""
    said = _refused_lines(delivery.refused) + _warning_lines(warnings)
    if said:  # the message went; its refused copies and its warnings are said, not failed
        inner += f"<system-out>{escape(said)}</system-out>"
    return f"{head}>{inner}</testcase>\n" if inner else head + "/>\n"


def _warning_lines(warnings: Iterable[ContentWarning]) -> str:
    return "".join(f"warning: {w.code}: {w.text}\n" for w in warnings)


def _refused_lines(refused: Iterable[RefusedCopy]) -> str:
    return "".join(f"copy refused: {_refusal(copy)}\n" for copy in refused)


def _refusal(copy: RefusedCopy) -> str:
    """`cc@example.com: 550 5.1.1 No such user`, and whether it will be retried."""
    reply = " ".join(str(part) for part in (copy.smtp_code, copy.smtp_response) if part)
    return f"{copy.email}: {reply}" + (" (waiting for a retry)" if copy.waiting else "")


def _skip_reason(delivery: Delivery, status: DeliveryState) -> str:
    if status == DeliveryState.SUPPRESSED:
        return f"suppressed: {delivery.response}"  # where it is listed
    return "delivered by an earlier run" if status == DeliveryState.SKIPPED else "not tried"


def write_failed_csv(path: Path, rows: Iterable[tuple[Mapping[str, Any], Delivery]]) -> int:
    """The recipients not delivered, with all their fields (`rows`: each recipient's fields and
    delivery) and a `reason` column: usable as the next job's recipients_file; then a row for
    each refused copy of a message that went: its address in `email`, the other fields its
    recipient's. Returns how many rows were written."""
    unreached = [(f, d) for f, d in rows if report_status(d) in UNDELIVERED or d.refused]
    columns = _columns(fields for fields, _ in unreached)
    reason = "reason" if "reason" not in columns else "batchmail_reason"
    written = 0
    with _open(path, "failed CSV", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*columns, reason])
        for fields, delivery in unreached:
            values = [_cell(fields.get(c)) for c in columns]
            if report_status(delivery) in UNDELIVERED:
                writer.writerow([*values, f"{delivery.state}: {_reply(delivery)}"])
                written += 1
            for copy in delivery.refused:
                values[0] = copy.email  # `email` is the first column
                writer.writerow([*values, f"copy of {delivery.email} refused: {_refusal(copy)}"])
                written += 1
    return written


def _columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    columns = {"email": None}
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def append_step_summary(
    path: Path,
    head: ReportHead,
    summary: Mapping[str, int],
    undelivered: Iterator[Delivery],
    report: Path,
) -> None:
    """A Markdown summary for GitHub Actions (`$GITHUB_STEP_SUMMARY`): counts, who was not
    reached, and where the report is."""
    lines = [
        f"### batchmail: {head.job} ({head.status})",
        "",
        "| status | recipients |",
        "|---|---:|",
    ]
    lines += [f"| {key} | {value} |" for key, value in summary.items() if value or key == "total"]
    shown = [d for _, d in zip(range(_LISTED_IN_SUMMARY), undelivered, strict=False)]
    if shown:
        lines += ["", "| recipient | status | reply |", "|---|---|---|"]
        lines += [f"| {_md(d.email)} | {d.state} | {_md(_reply(d))} |" for d in shown]
    lines += ["", f"Report: `{report}`", ""]
    with _open(path, "step summary", mode="a") as out:
        out.write("\n".join(lines))


def _reply(delivery: Delivery) -> str:
    """The server's reply as one line: `550 5.1.1 No such user`."""
    return " ".join(str(part) for part in (delivery.code, delivery.response) if part)


def _md(text: str) -> str:
    return text.strip().replace("|", "\\|").replace("\n", " ")


@contextmanager
def _open(
    path: Path, what: str, *, mode: str = "w", newline: str | None = None
) -> Iterator[IO[str]]:
    try:
        with path.open(mode, encoding="utf-8", newline=newline) as out:
            yield out
    except OSError as exc:
        raise StateError(f"cannot write the {what} {path}: {exc.strerror}") from None
