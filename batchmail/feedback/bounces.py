"""`batchmail bounces`: notifications read from a mailbox, matched to the job's journal,
recorded there, and their permanent failures and complaints appended to the job's first
suppression file. Reading the same notifications again changes nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from msgspec import Struct, field

from batchmail.build.compose import Composer
from batchmail.errors import invalid
from batchmail.feedback.mailboxes import Stored, read_source
from batchmail.feedback.matching import Matcher, named_address
from batchmail.feedback.notifications import Notification, one_line, read_notification
from batchmail.feedback.options import BounceOptions
from batchmail.feedback.suppress_file import append_new
from batchmail.load.addresses import Mailbox
from batchmail.load.job import display_path
from batchmail.load.settings import Job
from batchmail.send.invocation import open_journal
from batchmail.state.feedback import SUPPRESSED_KINDS, FeedbackBook, FeedbackEntry
from batchmail.state.journal import journal_path

NOT_MATCHED = "not matched"
KEEP_EVERY = 500  # new entries kept in memory before the file and the journal get them


class BounceSummary(Struct):
    messages: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # kind, or "not matched"
    recorded: int = 0  # entries new in the journal
    added: list[str] = field(default_factory=list)  # addresses appended to the file
    suppress_file: str = ""

    def line(self) -> str:
        kinds = ("bounced", "complained", "delayed", NOT_MATCHED)
        counted = ", ".join(f"{self.counts[kind]} {kind}" for kind in kinds)
        if self.added:
            news = f"{len(self.added)} added to {self.suppress_file}"
        elif self.recorded:
            news = f"nothing added to {self.suppress_file}"
        else:
            news = "nothing new: all recorded before"
        return f"bounces: {self.messages} messages: {counted}; {news}"


def read_bounces(job: Job, source: str, state_dir: Path, options: BounceOptions) -> BounceSummary:
    if not job.suppress:
        raise invalid(
            display_path(job.path),
            "batchmail bounces appends to the job's first suppress file: add one "
            "(suppress: [suppressed.txt])",
            "suppress",
        )
    if not journal_path(state_dir).exists():
        raise invalid(
            display_path(job.path),
            f"no journal in {state_dir}: run the job first, or name its --state-dir",
        )
    summary = BounceSummary(suppress_file=display_path(job.suppress[0]))
    with open_journal(state_dir, job.name) as journal:
        book = FeedbackBook(journal.db, job.name)
        matcher = Matcher(Composer(job, lambda _: None), book)
        keeper = _Keeper(job, book, summary)
        messages = read_source(source, options.password_env, options.environ)
        try:
            for stored in messages:
                summary.messages += 1
                notification = read_notification(stored.data)
                _entries(stored, notification, matcher, keeper, options.on_line)
        finally:  # what was read before a connection failed is kept too
            keeper.flush()
    return summary


def _entries(
    stored: Stored,
    notification: Notification,
    matcher: Matcher,
    keeper: _Keeper,
    on_line: Callable[[str], None],
) -> None:
    """Print a notification's lines; keep what it says that is new."""
    summary = keeper.summary
    where = one_line(stored.where)
    if not notification.is_report:
        summary.counts[NOT_MATCHED] += 1
        subject = f" (subject: {notification.subject!r})" if notification.subject else ""
        on_line(f"{NOT_MATCHED}: {where}: {notification.not_report}{subject}")
        return
    matched = matcher.match(notification)
    if matched is None:
        summary.counts[NOT_MATCHED] += 1
        kinds = ", ".join(f"{f.kind} {f.status}" for f in notification.findings)
        on_line(f"{NOT_MATCHED}: {where}: a report ({kinds}) of no message in the job's journal")
        return
    for finding in notification.findings:
        address = named_address(finding, matched.delivered)
        if address is None:
            summary.counts[NOT_MATCHED] += 1
            on_line(f"{NOT_MATCHED}: {where}: a report naming no usable address")
            continue
        summary.counts[finding.kind] += 1
        delivered = matched.delivered
        entry = FeedbackEntry(
            notification.key,
            address.person_key,
            delivered.run_id,
            delivered.seq,
            finding.kind,
            finding.status,
            finding.diagnostic,
        )
        known = keeper.holds(entry)
        on_line(
            f"{'already recorded' if known else 'matched'}: {one_line(address.address)} "
            f"{finding.kind} {finding.status} ({where}; by {matched.by}: run {delivered.run_id}, "
            f"recipient {delivered.seq})"
        )
        if not known:
            keeper.add(entry, address)


class _Keeper:
    """New entries, kept in batches: the file first, then the journal. A crash in between
    leaves entries that the next reading records, finding their addresses in the file."""

    def __init__(self, job: Job, book: FeedbackBook, summary: BounceSummary):
        self.job = job
        self.book = book
        self.summary = summary
        self.pending: dict[tuple[str, str], tuple[FeedbackEntry, Mailbox]] = {}

    def add(self, entry: FeedbackEntry, address: Mailbox) -> None:
        self.pending.setdefault((entry.notice, entry.address), (entry, address))
        if len(self.pending) >= KEEP_EVERY:
            self.flush()

    def holds(self, entry: FeedbackEntry) -> bool:
        return (entry.notice, entry.address) in self.pending or self.book.has(entry)

    def flush(self) -> None:
        if not self.pending:
            return
        entries = list(self.pending.values())
        suppressed = [address for entry, address in entries if entry.kind in SUPPRESSED_KINDS]
        self.summary.added.extend(a.address for a in append_new(self.job, suppressed))
        self.summary.recorded += self.book.record_all([entry for entry, _ in entries])
        self.pending.clear()
