"""Validating and sending from several processes: rendering and building messages is CPU-bound,
and one Python process uses one core.

The processes are forked before the validation pass. Each validates its own share of the
recipients (see `Share`) and keeps what it built; the parent merges the shares' results,
and only when the whole job is valid does it tell them to send, each its share over its own
SMTP sessions. Nothing is sent while any share is invalid.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from batchmail.build.compose import Composer, PartValidation, Validation, merge
from batchmail.errors import EXIT_SOFTWARE, BatchmailError, InvalidJobError, Problem
from batchmail.load.settings import Job
from batchmail.send.halt import Halt, HaltReason
from batchmail.send.runner import Runner
from batchmail.send.share import Share
from batchmail.state.journal import Journal
from batchmail.state.records import Run
from batchmail.transport.credentials import Credentials

_PR_SET_PDEATHSIG = 1
# When halts differ between processes, the one reported is the most severe.
_SEVERITY = (
    HaltReason.ERROR,
    HaltReason.CONNECTION,
    HaltReason.SENDER_REFUSED,
    HaltReason.QUOTA,
    HaltReason.INTERRUPTED,
)


class Go(Struct, frozen=True):
    """The parent's word to send: the run chosen, and what the parent prepared to share."""

    run: Run
    credentials: Any = None  # Credentials.shared(): a token fetched once for every process


class ShareResult(Struct, frozen=True):
    sent_now: int
    halt: tuple[HaltReason, str, int] | None  # reason, message, exit code of a BatchmailError


class _Refused(Struct, frozen=True):
    """A share that is invalid as a whole (an unreadable data file, say), or failed."""

    problems: list[Problem]
    hidden: int
    error: tuple[str, int] | None = None  # message and exit code, for any other failure


class ProcessError(BatchmailError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# Called in a sending process when it has sent its share, before it reports to the parent.
_AT_SHARE_END: list[Callable[[], None]] = []


@contextmanager
def at_share_end(hook: Callable[[], None]) -> Iterator[None]:
    """While in this block, each sending process calls `hook` when it has sent its share: to
    pass on what it held back for the parent (batched events, say)."""
    _AT_SHARE_END.append(hook)
    try:
        yield
    finally:
        _AT_SHARE_END.remove(hook)


def sending_processes(job: Job) -> int:
    """One process per core, up to one per connection, when nothing paces the job: a rate limit
    must hold across all sessions, which one process's send loop holds exactly."""
    if job.rate.paced:
        return 1
    return max(1, min(job.rate.connections, os.cpu_count() or 1))


class _ShareWork(Struct):
    """What a forked process does with its share of the recipients: validate it, then, when
    the parent says so, send it. Created in the parent; each process runs its own copy."""

    composer: Composer
    journal_file: Path
    journal_name: str  # the job's, or its shard's
    validate_share: Callable[[Journal, Share], PartValidation]
    runner: Callable[[Journal, Share, int], Runner]  # for a journal, a share, its sessions
    processes: int
    credentials: Credentials | None
    # The processes' turns at writing the journal.
    write_lock: AbstractContextManager[Any] = field(
        default_factory=lambda: multiprocessing.get_context("fork").Lock()
    )
    journal: Journal | None = None

    def validate(self, share: Share) -> PartValidation:
        # An SQLite connection of its own: one must never cross a fork.
        self.journal = Journal(self.journal_file, self.journal_name, write_lock=self.write_lock)
        return self.validate_share(self.journal, share)

    def send(self, share: Share, go: Go) -> tuple[Halt | None, int]:
        assert self.journal is not None
        if self.credentials is not None:
            self.credentials.adopt(go.credentials)
        sessions = -(-self.composer.job.rate.connections // self.processes)
        runner = self.runner(self.journal, share, sessions)
        try:
            halt = runner.run(go.run)
        finally:
            for hook in _AT_SHARE_END:
                hook()
        if halt is None or halt.error is None:  # after an error, the parent or the next run
            # Here, while other processes may still send, rather than in the parent afterwards.
            self.journal.fold_own_log()
        return halt, runner.sent_now


class SendingProcesses:
    """Forked processes that validate their shares, then send them when told to.

    Must be started with no other threads running: a fork copies only the calling thread."""

    @classmethod
    def start(
        cls,
        processes: int,
        composer: Composer,
        journal: Journal,
        *,
        validate: Callable[[Journal, Share], PartValidation],
        runner: Callable[[Journal, Share, int], Runner],
        credentials: Credentials | None,
        share: Share,
    ) -> SendingProcesses:
        """`validate`: the validation pass over a share, writing to a journal; `runner`: the
        send loop for a journal, a share and its number of sessions; `share`: what the
        processes split among them (a shard, or the whole job)."""
        work = _ShareWork(
            composer, journal.path, journal.job, validate, runner, processes, credentials
        )
        with journal.disconnected():
            return cls(processes, work, share)

    def __init__(self, processes: int, work: _ShareWork, whole: Share):
        context = multiprocessing.get_context("fork")
        self._composer = work.composer
        self._credentials = work.credentials
        # What exists now lives as long as the processes: the collector need not look at it
        # again, and pages of it stay shared with the children instead of being copied.
        # https://docs.python.org/3/library/gc.html#gc.freeze
        gc.freeze()
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self._told = False
        for index in range(processes):
            parent_end, child_end = context.Pipe()
            share = whole.split(index, processes)
            child = context.Process(target=_child, args=(child_end, share, work))
            child.start()
            child_end.close()
            self._children.append((child, parent_end))

    def validation(self) -> Validation:
        """The whole job's validation from every share's; raises as a whole job's pass would."""
        parts = []
        for child, connection in self._children:
            result = _receive(child, connection)
            if isinstance(result, _Refused):
                if result.error is not None:
                    raise ProcessError(*result.error)
                raise InvalidJobError(result.problems, hidden=result.hidden)
            parts.append(result)
        self._composer.source.adopt(parts[0].repeated_rows)  # for a second pass here
        return merge(self._composer, parts)

    def send(self, run: Run, stop: threading.Event) -> tuple[Halt | None, int]:
        """Tell every process to send; the worst halt and how many messages went."""
        shared = self._credentials.shared() if self._credentials is not None else None
        self._tell(Go(run, shared))
        results = _collect(self._children, stop)
        return _worst_halt(results), sum(r.sent_now for r in results)

    def close(self) -> None:
        """Processes not told to send are told not to; all are waited for."""
        if not self._told:
            self._tell(None)
        for child, connection in self._children:
            connection.close()
            child.join()

    def _tell(self, go: Go | None) -> None:
        self._told = True
        for _, connection in self._children:
            with contextlib.suppress(OSError):  # one that died: _collect says so
                connection.send(go)

    def __enter__(self) -> SendingProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _receive(child: multiprocessing.process.BaseProcess, connection: Connection) -> Any:
    try:
        return connection.recv()
    except EOFError:
        child.join()
        raise ProcessError(f"a sending process died ({child.exitcode})", EXIT_SOFTWARE) from None


def _collect(
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]], stop: threading.Event
) -> list[ShareResult]:
    waiting = {connection: child for child, connection in children}
    results: list[ShareResult] = []
    forwarded = False
    while waiting:
        if stop.is_set() and not forwarded:
            for child in waiting.values():
                os.kill(child.pid or 0, signal.SIGINT)  # finish the message in progress, too
            forwarded = True
        for ready in wait(list(waiting), timeout=0.1):
            assert isinstance(ready, Connection)
            child = waiting.pop(ready)
            try:
                results.append(ready.recv())
            except EOFError:
                results.append(
                    ShareResult(
                        0,
                        (
                            HaltReason.ERROR,
                            f"a sending process died ({child.exitcode})",
                            EXIT_SOFTWARE,
                        ),
                    )
                )
    return results


def _child(connection: Connection, share: Share, work: _ShareWork) -> None:
    _die_with_parent()
    try:
        validated = _validate(work, share)
        connection.send(validated)
        if isinstance(validated, _Refused):
            return
        go = connection.recv()
        if go is not None:
            connection.send(_send(work, share, go))
    except (EOFError, OSError):  # the parent is gone or stopped listening
        pass
    finally:
        connection.close()
        # Skip the interpreter's clean-up: it would close the parent's inherited handles.
        os._exit(0)


def _validate(work: _ShareWork, share: Share) -> PartValidation | _Refused:
    try:
        return work.validate(share)
    except InvalidJobError as exc:
        return _Refused(list(exc.problems), exc.hidden)
    except BaseException as exc:  # reported to the parent, which raises it
        return _Refused([], 0, _failure(exc))


def _send(work: _ShareWork, share: Share, go: Go) -> ShareResult:
    try:
        halt, sent_now = work.send(share, go)
    except BaseException as exc:  # reported to the parent, which raises it
        return ShareResult(0, (HaltReason.ERROR, *_failure(exc)))
    return ShareResult(sent_now, _portable(halt))


def _failure(exc: BaseException) -> tuple[str, int]:
    """An error to raise in the parent: message and exit code. A bug's traceback is shown."""
    if isinstance(exc, BatchmailError):
        return str(exc), exc.exit_code
    # Not through sys.stderr: its lock may have been held by a parent thread at the fork.
    os.write(2, traceback.format_exc().encode())
    return str(exc), EXIT_SOFTWARE


def _die_with_parent() -> None:
    """A parent that leaves at once (a second Ctrl-C) takes its sending processes with it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return


def _portable(halt: Halt | None) -> tuple[HaltReason, str, int] | None:
    if halt is None:
        return None
    code = halt.error.exit_code if isinstance(halt.error, BatchmailError) else EXIT_SOFTWARE
    return (halt.reason, halt.message, code)


def _worst_halt(results: list[ShareResult]) -> Halt | None:
    halts = [r.halt for r in results if r.halt is not None]
    if not halts:
        return None
    reason, message, code = min(halts, key=lambda h: _SEVERITY.index(h[0]))
    error = (
        ProcessError(message, code) if reason in (HaltReason.ERROR, HaltReason.CONNECTION) else None
    )
    return Halt(reason, message, error)
