"""The one error family of batchmail: each carries the data a user needs and its exit code."""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CONNECT = 3
EXIT_SOFTWARE = 70  # a bug (sysexits.h EX_SOFTWARE): a sending process crashed or died
EXIT_IO = 74
EXIT_TEMPFAIL = 75
EXIT_INTERRUPTED = 130


class BatchmailError(Exception):
    """A failure the user can act on: printed as one line (or a few), never as a traceback."""

    exit_code = EXIT_INVALID

    def lines(self) -> list[str]:
        return [str(self)]


class Problem(Struct, frozen=True):
    """One located problem: `where` is `file:line` or `file`, `what` the field path."""

    where: str
    message: str
    what: str = ""

    def __str__(self) -> str:
        parts = [p for p in (self.where, self.what) if p]
        return ": ".join([*parts, self.message])


class InvalidJobError(BatchmailError):
    """The job cannot be sent as it is (schema, data, template, attachment, usage): exit 2."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: Sequence[Problem] = (), hidden: int = 0):
        super().__init__(str(problems[0]) if problems else "invalid job")
        self.problems = problems
        self.hidden = hidden  # problems not listed, to keep the output readable

    def lines(self) -> list[str]:
        out = [str(p) for p in self.problems]
        if self.hidden:
            out.append(f"... and {self.hidden} more problems")
        return out


def invalid(where: str, message: str, what: str = "") -> InvalidJobError:
    return InvalidJobError([Problem(where, message, what)])


class ConnectFailure(BatchmailError):
    """Could not connect, negotiate TLS or authenticate."""

    exit_code = EXIT_CONNECT


class StateError(BatchmailError):
    """The journal or the report could not be written."""

    exit_code = EXIT_IO
