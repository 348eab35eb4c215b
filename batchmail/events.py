"""Delivery events from every sending thread and process to one handler in the main process.

Threads of the main process call the handler directly, one at a time. Forked sending processes
write one JSON line per event to a pipe with a single `os.write`: atomic for lines under
PIPE_BUF, and free of Python-level locks, which a forked process must not touch (another thread
may have held them at the fork); a reader thread hands those lines to the handler.
"""

from __future__ import annotations

import json
import os
import select
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .runner import Event

_MAX_LINE = 3800  # under PIPE_BUF (4096), so that concurrent writes never interleave
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


class EventPipe:
    """`emit` from any thread or forked process; `handle` in a reader thread of the parent."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        self._reader = threading.Thread(target=self._drain, name="batchmail-events", daemon=True)

    def __enter__(self) -> EventPipe:
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._write)  # the reader sees the end once every forked copy is closed too
        self._reader.join()
        os.close(self._read)

    def emit(self, event: Event) -> None:
        if os.getpid() == self._owner:
            self._handle(event_record(event))
            return
        line = json.dumps(event_record(event), ensure_ascii=True).encode()[:_MAX_LINE]
        os.write(self._write, line + b"\n")

    def _handle(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.handler(record)

    def _drain(self) -> None:
        for line in self._lines():
            self._handle(json.loads(line))

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
