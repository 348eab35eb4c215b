"""The job file's schema check, in a forked process while the command line loads the rest.

Importing jsonschema takes about a tenth of a run's start, on one core; the renderer and the
SMTP client take as long again. On a machine with more than one core the command line forks
this check first, then imports the rest while the check runs; `load_job` takes its answer if it
was made for the same file, text and environment, and checks the schema itself otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from batchmail.errors import Problem
from batchmail.load.job import expect_schema_verdict, schema_check


class EarlySchemaCheck:
    """A forked process checking a job file's schema."""

    def __init__(self, job_path: Path):
        self._path = job_path.absolute()
        self._environ = dict(os.environ)
        self._answer: tuple[str, list[Problem]] | None = None
        read, write = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            os.close(read)
            _answer(self._path, self._environ, write)
        os.close(write)
        self._read: int | None = read

    def problems(self, path: Path, text: str, environ: Mapping[str, str]) -> list[Problem] | None:
        """The problems found, if the check read this file's text with this environment."""
        answer = self._wait()
        if path != self._path or answer is None or answer[0] != _digest(text):
            return None
        return answer[1] if dict(environ) == self._environ else None

    def _wait(self) -> tuple[str, list[Problem]] | None:
        if self._read is not None:
            with os.fdopen(self._read, "rb") as stream:
                self._read = None
                data = stream.read()
            os.waitpid(self._pid, 0)
            self._answer = _decode(data)
        return self._answer


def start_schema_check(job_path: Path) -> None:
    """Check the job file's schema in another process, for the next load_job to take. Not on a
    single core, where the check would only wait for the imports' turn, nor while other threads
    run: a fork copies only this one, and none of the locks they hold."""
    if len(os.sched_getaffinity(0)) >= 2 and threading.active_count() == 1:
        expect_schema_verdict(EarlySchemaCheck(job_path))


def _answer(job_path: Path, environ: dict[str, str], write: int) -> None:
    """In the forked process: write the text's digest and the problems as JSON, and leave. Any
    failure writes nothing; the main process then checks for itself, and says what it finds."""
    try:
        with contextlib.suppress(Exception):
            text, problems = schema_check(job_path, environ)
            found = [[p.where, p.message, p.what] for p in problems]
            with os.fdopen(write, "wb") as stream:
                stream.write(json.dumps([_digest(text), found]).encode())
    finally:
        os._exit(0)  # nothing of the main process's to flush or clean up here


def _decode(data: bytes) -> tuple[str, list[Problem]] | None:
    if not data:
        return None
    digest, found = json.loads(data)
    return digest, [Problem(where, message, what) for where, message, what in found]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
