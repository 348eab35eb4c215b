"""One invocation of a job after loading: its journal under the job's lock, the validation pass
(here or in the sending processes), the send, and the records folded into the journal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from msgspec import structs

from batchmail.build.compose import (
    Built,
    Composer,
    PartValidation,
    Validation,
    merge,
    validate_part,
)
from batchmail.errors import InvalidJobError, StateError
from batchmail.load.settings import Job
from batchmail.load.suppression import load_suppression
from batchmail.send.halt import Halt, HaltReason
from batchmail.send.kept import KeptMessages
from batchmail.send.pacing import QUOTA_SPAN, RateLimiter
from batchmail.send.processes import SendingProcesses, sending_processes
from batchmail.send.run_status import Ending
from batchmail.send.runner import Event, Runner, choose_run
from batchmail.send.shard import Shard
from batchmail.send.share import Share
from batchmail.state.job_lock import job_lock
from batchmail.state.journal import Journal, journal_path
from batchmail.state.records import Run, Staged
from batchmail.state.states import DeliveryState
from batchmail.transport.contract import Transport
from batchmail.transport.credentials import Credentials


@contextmanager
def open_journal(state_dir: Path, job: str, shard: Shard | None = None) -> Iterator[Journal]:
    """The job's journal, under its lock, with what a killed run recorded last folded in; a
    shard's has an entry and a lock of its own."""
    job = shard.journal_name(job) if shard is not None else job
    with job_lock(state_dir, job):
        journal = Journal(journal_path(state_dir), job)
        try:
            journal.fold_logs()
            journal.clear_staging()
            yield journal
        finally:
            journal.close()


class Invocation:
    """Validates a job and sends what its run still needs, from this process or several."""

    def __init__(
        self,
        composer: Composer,
        journal: Journal,
        transports: Callable[[], Transport],
        credentials: Credentials | None,
        *,
        processes: int | None,
        stop: threading.Event,
        on_event: Callable[[Event], None],
        skip_unknown: bool,
        shard: Shard | None = None,
    ):
        # A shard paces itself at 1/N of every rate: N shards together keep the job's pace.
        self.job: Job = shard.paced(composer.job) if shard is not None else composer.job
        self.composer = composer
        self.journal = journal
        self.transports = transports
        self.credentials = credentials
        # One process per core when nothing paces the job, unless the caller says.
        self.processes = processes or sending_processes(self.job)
        self.stop = stop
        self.on_event = on_event
        self.skip_unknown = skip_unknown
        self.share = Share.of(shard)  # what this invocation sends: the job, or a shard of it
        self.kept = KeptMessages(composer)
        # Read by every invocation, before any process is forked, and kept out of the inputs'
        # digest: a list that grew since the run began (bounces) is honoured when it resumes.
        self.suppression = load_suppression(self.job)
        self._stack = ExitStack()
        self._team: SendingProcesses | None = None

    def __enter__(self) -> Invocation:
        if self.processes > 1:
            team = SendingProcesses.start(
                self.processes,
                self.composer,
                self.journal,
                validate=self.validate_share,
                runner=self.runner,
                credentials=self.credentials,
                share=self.share,
            )
            self._team = self._stack.enter_context(team)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def validate(self) -> Validation:
        """The validation pass, here or in the forked processes (each its share)."""
        if self._team is None:
            return merge(self.composer, [self.validate_share(self.journal, self.share)])
        return self._team.validation()

    def validate_share(self, journal: Journal, share: Share) -> PartValidation:
        """The validation pass over a share: each message built that the share sends is staged
        in the journal, and kept for sending while there is room."""
        keep, holds = self.kept.keep, share.holds
        with journal.staging() as stage:

            def built(message: Built) -> None:
                recipient = message.recipient
                if holds(recipient.seq):
                    stage(
                        Staged(
                            recipient.seq, recipient.email, message.size, message.attachment_names
                        )
                    )
                    keep(message)

            return validate_part(self.composer, built, share.builds, share.first)

    def run(
        self,
        validation: Validation,
        *,
        new_run: bool,
        on_start: Callable[[int, Job, str], None],
    ) -> Ending:
        """Resume or start the job's run, send what it still needs, and record how it ended.
        `on_start`: told how many messages are to go, the job and the run id."""
        try:
            shard = structs.replace(validation, count=self.share.size(validation.count))
            run = choose_run(self.journal, self.job, shard, new_run=new_run)
        except InvalidJobError:
            self.journal.clear_staging()
            raise
        if self.credentials is not None:
            self.credentials.prepare()  # after validation: an invalid job contacts nothing
        counts = self.journal.summary(run)
        on_start(run.total - counts.get(DeliveryState.SKIPPED, 0), self.job, run.run_id)
        halt, sent_now = self._send(run)
        waiting = self.journal.copies_waiting(run)
        ending = Ending(run, halt, self.journal.summary(run), sent_now, waiting)
        self.journal.end_invocation(run, ending.status)
        return ending

    def _send(self, run: Run) -> tuple[Halt | None, int]:
        """Send what `run` still needs; the halt, if any, and how many messages went."""
        if self._team is None:
            runner = self.runner(self.journal, self.share)
            halt, sent_now = runner.run(run), runner.sent_now
        else:
            halt, sent_now = self._team.send(run, self.stop)
        self._fold_records(halt)
        if halt is not None and halt.reason in (HaltReason.QUOTA, HaltReason.CONNECTION):
            self.journal.defer_pending(run, halt.message)
        return halt, sent_now

    def _fold_records(self, halt: Halt | None) -> None:
        """Fold the send loop's records into the journal. When sending stopped on an error (a
        full disk, say), folding may fail the same way: the first error is the one reported, and
        the records wait in their logs for the next run."""
        try:
            self.journal.fold_logs()
        except StateError:
            if halt is not None and halt.error is not None:
                raise halt.error from None
            raise

    def runner(self, journal: Journal, share: Share, connections: int = 0) -> Runner:
        job = self.job
        limiter = RateLimiter(
            job.rate.windows(),
            clock=time.time,
            sleep=self.stop.wait,
            batch_size=job.rate.batch_size,
            batch_pause=job.rate.batch_pause,
            history=_quota_history(journal, job),
        )
        return Runner(
            job,
            self.composer,
            journal,
            self.transports,
            limiter,
            time.time,
            self.stop,
            self.kept,
            on_event=self.on_event,
            skip_unknown=self.skip_unknown,
            share=share,
            connections=connections,
            suppression=self.suppression,
        )


def _quota_history(journal: Journal, job: Job) -> list[float]:
    quotas = [(limit, span) for limit, span in job.rate.windows() if span >= QUOTA_SPAN]
    if not quotas:
        return []
    longest = max(span for _, span in quotas)
    return journal.sent_times(time.time() - longest, max(limit for limit, _ in quotas))
