"""Images of an HTML body embedded as `cid:` parts (RFC 2392), read once per file."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from batchmail.build.mime import HeaderValueError, Part, detect_type, inline_part
from batchmail.errors import invalid
from batchmail.load.job import display_path
from batchmail.load.settings import Job, TemplateRef

_CACHED_FILES = 256


class InlineImages:
    """Turns a relative image path of the Markdown into a `cid:` URL and its part."""

    def __init__(self, job: Job, body: TemplateRef):
        self.base = job.base_dir.resolve()
        # Paths are relative to the Markdown file, as an editor's preview shows them.
        self.folder = (self.base / body.name).parent
        self.where = body.where
        self.domain = job.sender.ascii_address.rpartition("@")[2]
        self._load = lru_cache(maxsize=_CACHED_FILES)(self._encode)

    def embed(self, src: str, parts: dict[str, Part], who: str) -> str | None:
        """`cid:...` for a local image (its part added to `parts`); None for a remote one."""
        split = urlsplit(src)
        if split.scheme or split.netloc or not split.path:
            return None  # http:, data:, cid:, //host/...: not ours to embed
        if PurePosixPath(split.path).is_absolute():
            raise invalid(
                self.where,
                f"image {src!r}: write the path relative to the Markdown file ({who})",
                "template.inline_images",
            )
        path = self.folder / split.path
        if not path.resolve().is_relative_to(self.base):
            raise invalid(
                self.where,
                f"image {src!r} resolves outside base_dir {display_path(self.base)} ({who})",
                "template.inline_images",
            )
        if not path.is_file():
            raise invalid(
                self.where,
                f"image not found: {display_path(path)} ({who})",
                "template.inline_images",
            )
        content_id, part = self._load(path.resolve())
        parts[content_id] = part
        return f"cid:{content_id}"

    def _encode(self, path: Path) -> tuple[str, Part]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise invalid(self.where, f"cannot read {display_path(path)}: {exc.strerror}") from None
        # From the content, so the same image has the same Content-ID in a preview and when sent.
        content_id = f"{hashlib.sha256(data).hexdigest()[:24]}@{self.domain}"
        try:
            part = inline_part(path.name, data, detect_type(data, path.name), content_id)
        except HeaderValueError as exc:
            raise invalid(self.where, f"image file name {exc}", "template.inline_images") from None
        return content_id, part
