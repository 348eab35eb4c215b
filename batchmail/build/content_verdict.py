"""What the content checks of a validation pass found, and what becomes of it: warnings, one
line per kind however many messages have it, or, with `--strict`, errors that stop the job."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from msgspec import Struct, field

from batchmail.build.content_checks import ContentWarning, check_job
from batchmail.errors import InvalidJobError, Problem
from batchmail.load.job import display_path
from batchmail.load.settings import Job

_NAMED = 3  # recipients named in a warning's line
_LISTED_ERRORS = 20  # as many as the validation pass lists of its other problems


class ContentFindings(Struct):
    """Each message's warnings by its recipient's seq (only those with any), and the job's."""

    messages: dict[int, tuple[ContentWarning, ...]] = field(default_factory=dict)
    job: tuple[ContentWarning, ...] = ()

    @classmethod
    def merged(cls, parts: Iterable[dict[int, tuple[ContentWarning, ...]]]) -> ContentFindings:
        findings = cls()
        for part in parts:
            findings.messages.update(part)
        findings.messages = dict(sorted(findings.messages.items()))
        return findings

    def of(self, seq: int) -> tuple[ContentWarning, ...]:
        return self.messages.get(seq, ())

    def __bool__(self) -> bool:
        return bool(self.messages or self.job)

    def counts(self) -> dict[str, int]:
        """How many messages (or the job: 1) have each kind of warning, by code."""
        counts: dict[str, int] = {}
        for warning in self._all():
            counts[warning.code] = counts.get(warning.code, 0) + 1
        return counts

    def lines(self) -> list[str]:
        """One line per kind: how many messages, the first few recipients, the first text."""
        kinds: dict[str, list[ContentWarning]] = {}
        counts = self.counts()
        for warning in self._all():
            named = kinds.setdefault(warning.code, [])
            if len(named) < _NAMED:
                named.append(warning)
        return [_line(code, named, counts[code]) for code, named in kinds.items()]

    def problems(self) -> tuple[list[Problem], int]:
        """The warnings as errors, each naming the file, the line and the recipient (the first
        few listed), and how many more there are."""
        listed: list[Problem] = []
        total = 0
        for seq, warning in self._numbered():
            total += 1
            if len(listed) < _LISTED_ERRORS:
                who = f" (recipient {seq}, {warning.recipient})" if warning.recipient else ""
                listed.append(Problem(warning.where, warning.text + who, warning.code))
        return listed, total - len(listed)

    def _all(self) -> Iterator[ContentWarning]:
        return (warning for _, warning in self._numbered())

    def _numbered(self) -> Iterator[tuple[int, ContentWarning]]:
        yield from ((0, warning) for warning in self.job)
        for seq, warnings in self.messages.items():
            yield from ((seq, warning) for warning in warnings)


def findings_of(
    job: Job, count: int, parts: Iterable[dict[int, tuple[ContentWarning, ...]]]
) -> ContentFindings:
    """The whole job's findings from its parts' (each message's by seq) and its own."""
    findings = ContentFindings.merged(parts)
    findings.job = check_job(count, job.unsubscribe is not None, display_path(job.path))
    return findings


def judge(findings: ContentFindings, *, strict: bool, warn: Callable[[str], None]) -> None:
    """Warn of what the checks found, one line per kind; with `strict`, refuse the job instead
    (InvalidJobError: exit 2, nothing sent)."""
    if not findings:
        return
    if strict:
        problems, hidden = findings.problems()
        raise InvalidJobError(problems, hidden=hidden)
    for line in findings.lines():
        warn(line)


def _line(code: str, named: list[ContentWarning], count: int) -> str:
    first = named[0]
    if not first.recipient:  # the job's own
        return f"{first.where}: {code}: {first.text}"
    who = ", ".join(w.recipient for w in named)
    more = f" and {count - len(named):,} more" if count > len(named) else ""
    messages = "1 message" if count == 1 else f"{count:,} messages"
    return f"{code} in {messages} ({who}{more}): {first.text}"
