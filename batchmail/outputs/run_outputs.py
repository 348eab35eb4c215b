"""What a run leaves behind besides the journal: the report, the CI outputs, the preview page."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from batchmail.build.compose import Composer
from batchmail.build.content_checks import ContentWarning
from batchmail.build.content_verdict import ContentFindings
from batchmail.load.recipients import Recipient
from batchmail.outputs.report import ReportHead, full_summary, recipient_entry, write_report
from batchmail.send.run_status import Ending
from batchmail.send.shard import Shard
from batchmail.state.journal import Journal
from batchmail.state.records import Delivery, Run, report_status
from batchmail.state.states import UNDELIVERED, DeliveryState, RunStatus
from batchmail.transport.folder import eml_name


class RunOutputs(Struct):
    """Where a run's outputs go; written once the run is over, or refused as invalid."""

    job: str
    composer: Composer  # for Message-IDs, and the recipients of the failed-recipients CSV
    dry_run: bool
    started: float
    report: Path
    out: Path | None = None  # a dry run's previews
    junit: Path | None = None
    failed_csv: Path | None = None
    step_summary: Path | None = None  # GitHub Actions' $GITHUB_STEP_SUMMARY
    content: ContentFindings = field(default_factory=ContentFindings)  # the content checks'
    shard: Shard | None = None  # the shard the run sends, if it sends one

    def write_invalid(self, errors: list[str]) -> None:
        now = time.time()
        head = ReportHead(
            self.job,
            self.dry_run,
            self.started,
            now,
            RunStatus.INVALID,
            errors=errors,
            shard=self._shard_fields(),
        )
        write_report(self.report, head, full_summary({}), [])

    def write(
        self, journal: Journal, ending: Ending, summary: dict[str, int], job_total: int
    ) -> None:
        """The report, the CI outputs asked for, and a dry run's preview page; `job_total`:
        the whole job's recipients, which a shard's report records."""
        run, status = ending.run, ending.status
        self._write_report(journal, run, status, summary, ending.message, job_total=job_total)
        self._write_ci_outputs(journal, run, status, summary)
        if self.out is not None:
            from batchmail.outputs.preview_page import write_index  # noqa: PLC0415 - email.parser and html: dry runs only

            current: dict[Path, tuple[ContentWarning, ...]] = {}
            write_index(
                self.out,
                self.job,
                self._previews(journal, run, current),
                warnings_of=lambda path: current.get(path, ()),
                checks=self.content.lines(),
            )

    def _previews(
        self, journal: Journal, run: Run, current: dict[Path, tuple[ContentWarning, ...]]
    ) -> Iterator[Path]:
        """The dry run's .eml files in order, named from the journal, not by listing a folder
        that may hold a million of them; `current` holds the warnings of the one just given."""
        assert self.out is not None
        for delivery in journal.deliveries(run):
            if delivery.state == DeliveryState.PREVIEWED:
                path = self.out / eml_name(delivery.seq, delivery.email)
                current.clear()
                current[path] = self.content.of(delivery.seq)
                yield path

    def _write_ci_outputs(
        self, journal: Journal, run: Run, status: RunStatus, summary: dict[str, int]
    ) -> None:
        if not (self.junit or self.failed_csv or self.step_summary):
            return
        # Imported when asked for: the JUnit writer's XML quoting loads urllib.request.
        from batchmail.outputs.ci import (  # noqa: PLC0415
            append_step_summary,
            write_failed_csv,
            write_junit,
        )

        if self.junit:
            content = self.content
            write_junit(self.junit, self.job, summary, journal.deliveries(run), content)
        if self.failed_csv:
            fields = (r.fields for r in self._recipients())
            write_failed_csv(self.failed_csv, zip(fields, journal.deliveries(run), strict=True))
        if self.step_summary:
            undelivered = (d for d in journal.deliveries(run) if report_status(d) in UNDELIVERED)
            head = ReportHead(self.job, self.dry_run, self.started, time.time(), status)
            append_step_summary(self.step_summary, head, summary, undelivered, self.report)

    def _write_report(
        self,
        journal: Journal,
        run: Run,
        status: RunStatus,
        summary: dict[str, int],
        message: str | None,
        *,
        job_total: int | None,
    ) -> None:
        head = ReportHead(
            self.job, self.dry_run, self.started, time.time(), status, run.run_id, message
        )
        head.warnings = _warnings_summary(self.content)
        entries: Iterator[dict[str, Any]] = (self._entry(run, d) for d in journal.deliveries(run))
        if self.shard is not None:
            head.shard, head.job_total, head.digest = self._shard_fields(), job_total, run.digest
            entries = self._shard_entries(run, journal.deliveries(run))
        write_report(self.report, head, summary, entries)

    def _entry(self, run: Run, delivery: Delivery) -> dict[str, Any]:
        entry = recipient_entry(delivery, self.composer.message_id(run.run_id, delivery.seq))
        entry["warnings"] = _warning_list(self.content.of(delivery.seq))
        return entry

    def _recipients(self) -> Iterator[Recipient]:
        """The recipients the run sent to, in order: the job's, or its shard's."""
        recipients = self.composer.recipients([], second_pass=True)
        shard = self.shard
        return recipients if shard is None else (r for r in recipients if shard.holds(r.seq))

    def _shard_fields(self) -> dict[str, int] | None:
        shard = self.shard
        return {"index": shard.index, "count": shard.count} if shard is not None else None

    def _shard_entries(self, run: Run, deliveries: Iterator[Delivery]) -> Iterator[dict[str, Any]]:
        """A shard's entries carry their sequence numbers, and those a failed CSV lists their
        row's fields, so that `merge` can put the job's report and CI outputs together. The
        recipients are read again only as far as the last of those."""
        recipients: Iterator[Recipient] | None = None
        for delivery in deliveries:
            entry = self._entry(run, delivery)
            entry["seq"] = delivery.seq
            if delivery.refused or report_status(delivery) in UNDELIVERED:
                recipients = recipients or self._recipients()
                found = next((r for r in recipients if r.seq == delivery.seq), None)
                entry["fields"] = found.fields if found is not None else {}
            yield entry


def _warning_list(warnings: Iterable[ContentWarning]) -> list[dict[str, str]]:
    return [{"code": w.code, "text": w.text} for w in warnings]


def _warnings_summary(content: ContentFindings) -> dict[str, Any]:
    """The report's count of content warnings: in all, by code, and the job's own."""
    counts = content.counts()
    return {"total": sum(counts.values()), "by_code": counts, "job": _warning_list(content.job)}
