"""Sending from several processes: rendering and building messages is CPU-bound, and one
Python process uses one core. Each process sends its own share of the recipients
(`seq % processes`) over its own SMTP sessions and records them in the shared journal.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from .errors import BatchmailError
from .journal import Run
from .runner import Halt, Runner

_PR_SET_PDEATHSIG = 1
# When halts differ between processes, the one reported is the most severe.
_SEVERITY = ("error", "connection", "sender_refused", "quota", "interrupted")


@dataclass(frozen=True)
class ShardResult:
    sent_now: int
    halt: tuple[str, str, int] | None  # reason, message, exit code of a BatchmailError


class ShardError(BatchmailError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def send_in_processes(
    make_runner: Callable[[tuple[int, int]], Runner],
    run: Run,
    processes: int,
    stop: threading.Event,
) -> tuple[Halt | None, int]:
    """Run one Runner per shard in forked processes; return the worst halt and the sent count.

    Must be called with no other threads running: a fork copies only the calling thread.
    """
    context = multiprocessing.get_context("fork")
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    for index in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(make_runner, (index, processes), run, sender))
        child.start()
        sender.close()
        children.append((child, receiver))
    results = _collect(children, stop)
    return _worst_halt(results), sum(r.sent_now for r in results)


def _collect(
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]], stop: threading.Event
) -> list[ShardResult]:
    waiting = {receiver: child for child, receiver in children}
    results: list[ShardResult] = []
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
                    ShardResult(0, ("error", f"a sending process died ({child.exitcode})", 70))
                )
            child.join()
    return results


def _child(
    make_runner: Callable[[tuple[int, int]], Runner],
    shard: tuple[int, int],
    run: Run,
    results: Connection,
) -> None:
    _die_with_parent()
    try:
        runner = make_runner(shard)
        halt = runner.run(run)
        results.send(ShardResult(runner.sent_now, _portable(halt)))
    except BaseException as exc:  # reported to the parent, which raises it
        # Not through sys.stderr: its lock may have been held by a parent thread at the fork.
        os.write(2, traceback.format_exc().encode())
        results.send(ShardResult(0, ("error", str(exc), getattr(exc, "exit_code", 70))))
    finally:
        results.close()
        # Skip the interpreter's clean-up: it would close the parent's inherited SQLite handle.
        os._exit(0)


def _die_with_parent() -> None:
    """A parent that leaves at once (a second Ctrl-C) takes its sending processes with it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return


def _portable(halt: Halt | None) -> tuple[str, str, int] | None:
    if halt is None:
        return None
    code = halt.error.exit_code if isinstance(halt.error, BatchmailError) else 70
    return (halt.reason, halt.message, code)


def _worst_halt(results: list[ShardResult]) -> Halt | None:
    halts = [r.halt for r in results if r.halt is not None]
    if not halts:
        return None
    reason, message, code = min(halts, key=lambda h: _SEVERITY.index(h[0]))
    error = ShardError(message, code) if reason in ("error", "connection") else None
    return Halt(reason, message, error)
