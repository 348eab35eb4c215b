"""The dry run's transport: each message written as an `.eml` file into a folder."""

from __future__ import annotations

import re
from pathlib import Path

from batchmail.errors import StateError
from batchmail.transport.contract import Envelope, Outcome


class FolderTransport:
    """Writes each message as `.eml` into a folder instead of sending it: the dry run's."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create {out_dir}: {exc.strerror}") from None

    def send(self, envelope: Envelope) -> Outcome:
        path = self.out_dir / preview_name(envelope.route.seq, envelope.route.recipient)
        try:
            path.write_bytes(envelope.data)
        except OSError as exc:
            raise StateError(f"cannot write {path}: {exc.strerror}") from None
        return Outcome("previewed", None, path.name)

    def close(self) -> None:
        pass


def preview_name(seq: int, address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)
    return f"{seq:06d}-{safe}.eml"
