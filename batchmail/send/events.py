"""Delivery events from every sending thread and process to one handler in the main process.

Threads of the main process call the handler directly, one at a time. Forked sending processes
write JSON lines to a pipe, several events per `os.write` of at most PIPE_BUF bytes, so that
writes of different processes never interleave: one write per event would wake the reader,
which shares the cores with the senders, for every message. A failure is written at once, the
others within BATCH_SECONDS. A reader thread hands the lines to the handler.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import msgspec

from batchmail.send.processes import at_share_end
from batchmail.send.runner import Event
from batchmail.transport.contract import DELIVERED_OUTCOMES

_PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is atomic
_MAX_LINE = 3800
BATCH_SECONDS = 0.1
Handler = Callable[[dict[str, Any]], None]


def event_record(event: Event) -> dict[str, Any]:
    outcome = event.outcome
    return {
        "seq": event.recipient.seq,
        "email": event.recipient.email,
        "status": outcome.state,
        "code": outcome.code,
        "response": outcome.response[:1000],
        "message_id": event.message_id,
        "attempt": event.attempt,
        "started": round(event.started, 6),
        "seconds": round(event.seconds, 6),
    }


def _line(record: dict[str, Any]) -> bytes:
    """The record as one JSON line of at most _MAX_LINE bytes: a long reply is cut, not the
    JSON."""
    line = msgspec.json.encode(record)
    if len(line) >= _MAX_LINE:
        record["response"] = record["response"][:200]
        line = msgspec.json.encode(record)
    return line + b"\n"


class EventPipe:
    """`emit` from any thread or forked process; `handle` in a reader thread of the parent."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        self._reader = threading.Thread(target=self._drain, name="batchmail-events", daemon=True)
        self._batch: list[bytes] = []  # a forked process's lines, not written yet
        self._batch_lock = threading.Lock()
        self._written = 0.0
        self._flushed = ExitStack()
        # A lock that another thread held at the fork would stay locked in the child.
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._batch, self._batch_lock = [], threading.Lock()

    def __enter__(self) -> EventPipe:
        self._reader.start()
        self._flushed.enter_context(at_share_end(self.flush))
        return self

    def __exit__(self, *exc: object) -> None:
        self._flushed.close()
        os.close(self._write)  # the reader sees the end once every forked copy is closed too
        self._reader.join()
        os.close(self._read)

    def emit(self, event: Event) -> None:
        if os.getpid() == self._owner:
            self._handle(event_record(event))
            return
        line = _line(event_record(event))
        with self._batch_lock:
            self._batch.append(line)
            now = time.monotonic()
            delivered = event.outcome.state in DELIVERED_OUTCOMES
            if not delivered or now - self._written >= BATCH_SECONDS:
                self._write_batch(now)

    def flush(self) -> None:
        """Write what this forked process has batched: when it has sent its share."""
        with self._batch_lock:
            self._write_batch(time.monotonic())

    def _write_batch(self, now: float) -> None:
        chunk = b""
        for line in self._batch:
            if len(chunk) + len(line) > _PIPE_BUF:
                os.write(self._write, chunk)
                chunk = b""
            chunk += line
        if chunk:
            os.write(self._write, chunk)
        self._batch.clear()
        self._written = now

    def _handle(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.handler(record)

    def _drain(self) -> None:
        for line in self._lines():
            self._handle(msgspec.json.decode(line))

    def _lines(self) -> Iterator[bytes]:
        pending = b""
        while True:
            select.select([self._read], [], [])
            chunk = os.read(self._read, 65536)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line)
