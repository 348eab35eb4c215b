"""Finding attachment files: shared globs once per job, templated paths per recipient."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path

from batchmail.build.mime import Part, attachment_part, detect_type
from batchmail.errors import invalid
from batchmail.load.job import display_path
from batchmail.load.settings import AttachmentSpec, Job

_CACHED_FILES = 256


class Attachments:
    """Resolves a job's attachment specs to encoded parts; a file is read and encoded once."""

    def __init__(self, job: Job):
        self.job = job
        self.base = job.base_dir.resolve()
        self._load = lru_cache(maxsize=_CACHED_FILES)(self._encode)
        self.shared = {
            i: self._shared(spec) for i, spec in enumerate(job.attachments) if not spec.templated
        }

    def for_recipient(self, rendered: Mapping[int, str], who: str) -> list[Part]:
        """Every part for one recipient, in the order of the job's specs."""
        parts: list[Part] = []
        for index, spec in enumerate(self.job.attachments):
            if index in self.shared:
                parts += self.shared[index]
            else:
                parts += self._templated(spec, rendered[index], who)
        return parts

    def _shared(self, spec: AttachmentSpec) -> list[Part]:
        matches = sorted(self.matching(spec.pattern))
        if not matches and spec.required:
            raise invalid(
                spec.where,
                f"no file matches {spec.pattern!r} (looked in {display_path(self.base)})",
                "attachments",
            )
        return [self._load(path, spec.content_type, spec.where) for path in matches]

    def _templated(self, spec: AttachmentSpec, rendered: str, who: str) -> list[Part]:
        # A rendered path is one literal file, never a glob: a recipient whose data says `*`
        # must not receive everybody's files.
        if Path(rendered).is_absolute():
            raise invalid(
                spec.where,
                f"{rendered!r} is an absolute path; a per-recipient path "
                f"must stay inside base_dir ({who})",
                "attachments",
            )
        path = self.base / rendered
        if not path.resolve().is_relative_to(self.base):
            raise invalid(
                spec.where,
                f"{rendered!r} resolves outside base_dir {display_path(self.base)} ({who})",
                "attachments",
            )
        if path.is_file():
            return [self._load(path, spec.content_type, spec.where)]
        if spec.required:
            raise invalid(
                spec.where, f"attachment not found: {display_path(path)} ({who})", "attachments"
            )
        return []

    def matching(self, pattern: str) -> Iterator[Path]:
        """The files a shared glob matches; public for callers that check where they lie."""
        full = pattern if Path(pattern).is_absolute() else str(self.base / pattern)
        for match in glob.iglob(full, recursive=True):
            path = Path(match)
            if path.is_file():
                yield path

    def _encode(self, path: Path, content_type: str | None, where: str) -> Part:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise invalid(where, f"cannot read {display_path(path)}: {exc.strerror}") from None
        return attachment_part(path.name, data, content_type or detect_type(data, path.name))
