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
from batchmail.outputs.report import ReportHead, full_summary, recipient_entry, write_report
from batchmail.state.journal import Journal
from batchmail.state.records import Run, report_status
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

    def write_invalid(self, errors: list[str]) -> None:
        now = time.time()
        head = ReportHead(
            self.job, self.dry_run, self.started, now, RunStatus.INVALID, errors=errors
        )
        write_report(self.report, head, full_summary({}), [])

    def write(
        self,
        journal: Journal,
        run: Run,
        status: RunStatus,
        summary: dict[str, int],
        message: str | None,
    ) -> None:
        """The report, the CI outputs asked for, and a dry run's preview page."""
        self._write_report(journal, run, status, summary, message)
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
            recipients = self.composer.recipients([], second_pass=True)
            write_failed_csv(self.failed_csv, zip(recipients, journal.deliveries(run), strict=True))
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
    ) -> None:
        head = ReportHead(
            self.job, self.dry_run, self.started, time.time(), status, run.run_id, message
        )
        head.warnings = _warnings_summary(self.content)
        entries = (
            recipient_entry(d, self.composer.message_id(run.run_id, d.seq))
            | {"warnings": _warning_list(self.content.of(d.seq))}
            for d in journal.deliveries(run)
        )
        write_report(self.report, head, summary, entries)


def _warning_list(warnings: Iterable[ContentWarning]) -> list[dict[str, str]]:
    return [{"code": w.code, "text": w.text} for w in warnings]


def _warnings_summary(content: ContentFindings) -> dict[str, Any]:
    """The report's count of content warnings: in all, by code, and the job's own."""
    counts = content.counts()
    return {"total": sum(counts.values()), "by_code": counts, "job": _warning_list(content.job)}
