"""batchmail as a library: validate or run a job, the same way for the CLI and the MCP server."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import structs

from batchmail.build.compose import Built, Composer, Validation, validate
from batchmail.errors import InvalidJobError, invalid
from batchmail.feedback.options import BounceOptions as BounceOptions  # noqa: PLC0414 - the face's types
from batchmail.load.job import display_path, load_job
from batchmail.load.recipients import Warn
from batchmail.load.settings import Job, RateSettings, SmtpSettings
from batchmail.load.suppression import load_suppression
from batchmail.outputs.report import full_summary
from batchmail.outputs.run_outputs import RunOutputs
from batchmail.send.invocation import Invocation, open_journal
from batchmail.send.job_preview import JobPreview as JobPreview  # noqa: PLC0414 - the face's types
from batchmail.send.job_preview import Screen, preview_job
from batchmail.send.job_preview import ShownMessage as ShownMessage  # noqa: PLC0414 - the face's types
from batchmail.send.run_options import RunOptions as RunOptions  # noqa: PLC0414 - the face's types
from batchmail.send.run_options import RunResult as RunResult  # noqa: PLC0414 - the face's types
from batchmail.send.run_options import ignore as _ignore
from batchmail.send.single import Attached as Attached  # noqa: PLC0414 - the face's types
from batchmail.send.single import FileToAttach as FileToAttach  # noqa: PLC0414 - the face's types
from batchmail.send.single import OneMessage as OneMessage  # noqa: PLC0414 - the face's types
from batchmail.send.single import SentOne as SentOne  # noqa: PLC0414 - the face's types
from batchmail.send.single import send_one as send_single
from batchmail.send.targets import Target, default_state_dir, preview_target, sending_target
from batchmail.transport.contract import Transport

if TYPE_CHECKING:
    from batchmail.feedback.bounces import BounceSummary
    from batchmail.outputs.merge import Merged
    from batchmail.send.draft import SavedDraft
    from batchmail.transport.drafts import DraftStore
    from batchmail.transport.probe import Check


def validate_job(
    path: Path,
    warn: Warn = _ignore,
    expect_count: int | None = None,
    strict: bool = False,
) -> tuple[Job, Validation]:
    """Load, render and build every message; raise InvalidJobError listing every problem (with
    `strict`, content warnings too). Every recipient is rendered, suppressed or not; the result
    counts the suppressed ones."""
    job = load_job(path)
    suppression = load_suppression(job)
    suppressed = 0

    def count_suppressed(built: Built) -> None:
        nonlocal suppressed
        suppressed += suppression.listed(built.recipient.mailbox) is not None

    validation = validate(Composer(job, warn, strict), count_suppressed if suppression else None)
    validation.suppressed = suppressed
    check_count(job, validation, expect_count)
    return job, validation


def check_count(job: Job, validation: Validation, expected: int | None) -> None:
    """The unattended-run guard: the job has exactly the number of recipients expected."""
    if expected is not None and validation.count != expected:
        raise invalid(
            display_path(job.path),
            f"{validation.count} recipients, but --expect-count says {expected}: nothing was sent",
        )


def dry_run(path: Path, options: RunOptions | None = None) -> RunResult:
    """A dry run: validate and render everything, and write one .eml per recipient and the
    preview page into `options.out`; no connection, no credentials, no pace."""
    return run_job(path, structs.replace(options or RunOptions(), dry_run=True))


def run_job(path: Path, options: RunOptions) -> RunResult:
    """Validate everything, then send (or preview) what still needs sending, and report."""
    started = time.time()
    shard = options.chosen_shard()  # a usage error before anything is read
    job = load_job(path, options.environ)
    if options.dry_run:  # sends nothing, so nothing paces it: as fast as an unpaced run
        job = structs.replace(job, rate=RateSettings(connections=job.rate.connections))
    composer = Composer(job, options.warn, options.strict)
    with ExitStack() as stack:
        target = _target(job, options, stack)
        journal = stack.enter_context(open_journal(target.state_dir, job.name, shard))
        invocation = Invocation(
            composer,
            journal,
            target.transports,
            target.credentials,
            processes=1 if options.transports else options.processes,
            stop=options.stop,
            on_event=options.on_event,
            skip_unknown=options.skip_unknown,
            shard=shard,
        )
        stack.enter_context(invocation)
        outputs = RunOutputs(
            job.name,
            composer,
            options.dry_run,
            started,
            target.report,
            target.out,
            options.junit,
            options.failed_csv,
            options.step_summary,
            shard=shard,
        )
        try:
            validation = invocation.validate()
            check_count(job, validation, options.expect_count)
            check_digest(job, validation, options.expected_digest)
        except InvalidJobError as exc:
            journal.clear_staging()
            outputs.write_invalid(exc.lines())
            raise
        outputs.content = validation.content
        new_run = options.new_run or options.dry_run
        ending = invocation.run(validation, new_run=new_run, on_start=options.on_start)
        summary = full_summary(ending.counts)
        outputs.write(journal, ending, summary, validation.count)
        ending.raise_failure()
        return RunResult(
            job.name,
            ending.run.run_id,
            ending.status,
            ending.exit_code,
            summary,
            target.report,
            ending.message,
            target.out,
            shard,
        )
    raise AssertionError("unreachable")


def check_digest(job: Job, validation: Validation, expected: str | None) -> None:
    """For a caller that showed someone a preview: send only what was previewed."""
    if expected is not None and validation.digest != expected:
        raise invalid(
            display_path(job.path),
            "the job's inputs changed since they were previewed: nothing was sent",
        )


def default_report_path(job: Job, options: RunOptions) -> Path:
    return default_state_dir(job, options.state_dir, options.environ) / f"{job.name}.report.json"


def _target(job: Job, options: RunOptions, stack: ExitStack) -> Target:
    if options.dry_run:
        return preview_target(job, options.out, options.report, stack)
    state_dir = default_state_dir(job, options.state_dir, options.environ)
    report = options.report or default_report_path(job, options)
    return sending_target(job, state_dir, report, options.environ, options.transports)


def preview(job: Job, limit: int = 3, screen: Screen | None = None) -> JobPreview:
    """Validate a loaded job and show its first `limit` messages as people read them; send
    nothing. `screen` refuses any message holding what it finds (a secret, say)."""
    return preview_job(job, limit, screen)


def send_one(
    message: OneMessage,
    smtp: SmtpSettings,
    environ: Mapping[str, str],
    transport: Transport | None = None,  # instead of the SMTP server: a MemoryTransport...
) -> SentOne:
    """One message outside any job, built and sent as a job's messages are."""
    return send_single(message, smtp, environ, transport=transport)


def save_draft(
    message: OneMessage, mailbox: str, password: str, store: DraftStore | None = None
) -> SavedDraft:
    """The message send_one would send, appended to the IMAP folder `mailbox` (an imaps:// URL)
    flagged \\Draft; no SMTP. `store`: instead of the IMAP folder (a MemoryDrafts...)."""
    from batchmail.send.draft import save_draft as save  # noqa: PLC0415 - only this tool's

    return save(message, mailbox, password, store)


def bounces(path: Path, source: str, options: BounceOptions) -> BounceSummary:
    """Read notifications from a Maildir folder, an mbox file or an imaps:// folder, match them
    to the job's journal, and suppress the recipients that bounced or complained."""
    from batchmail.feedback.bounces import read_bounces  # noqa: PLC0415 - only this command's

    job = load_job(path, options.environ)
    state_dir = default_state_dir(job, options.state_dir, options.environ)
    return read_bounces(job, source, state_dir, options)


def init_job(folder: Path) -> list[Path]:
    """Write a runnable example job (job file, templates, CSV, .gitignore) into `folder`;
    nothing when any of its files exists there already (InvalidJobError naming it)."""
    from batchmail.outputs.starter import write_starter  # noqa: PLC0415 - only this command's

    return write_starter(folder)


def check_job(
    path: Path,
    environ: Mapping[str, str] = os.environ,
    warn: Warn = _ignore,
    dns: str | None = None,
) -> list[Check]:
    """Validate the job, connect to its server as a run would (TLS, AUTH) and QUIT before any
    MAIL, then look up SPF, DMARC and the DKIM key through `dns` (HOST[:PORT]; None: the system
    resolver): each check ok / warn / fail."""
    from batchmail.send.preflight import check_job as probe_job  # noqa: PLC0415 - only this command's

    return probe_job(path, environ, warn, dns)


def merge_reports(reports: list[Path], out: Path, junit: Path | None, csv: Path | None) -> Merged:
    """One report (and JUnit, failed CSV) from the shards' reports, checked to make one job."""
    from batchmail.outputs.merge import merge_reports as merge  # noqa: PLC0415 - only merge's

    return merge(reports, out, junit, csv)
