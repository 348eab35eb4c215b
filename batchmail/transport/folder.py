"""The dry run's transport: each message written as an `.eml` file into a folder."""

from __future__ import annotations

import re
from pathlib import Path

from batchmail.errors import StateError
from batchmail.load.addresses import mailbox
from batchmail.transport.contract import Envelope, Outcome, OutcomeState


class FolderTransport:
    """Writes each message as `.eml` into a folder instead of sending it: the dry run's."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create {out_dir}: {exc.strerror}") from None

    def send(self, envelope: Envelope) -> Outcome:
        path = self.out_dir / eml_name(envelope.route.seq, envelope.route.recipient)
        try:
            path.write_bytes(envelope.data)
        except OSError as exc:
            raise StateError(f"cannot write {path}: {exc.strerror}") from None
        return Outcome(OutcomeState.PREVIEWED, None, path.name)

    def close(self) -> None:
        pass


def eml_name(seq: int, address: str) -> str:
    """The file name of message `seq`, the same from any form of its recipient's address (as
    written, or the envelope's): the address as people write it, a Unicode domain in lower case,
    where any character but a letter, a digit or `@._+-` becomes `_`, so that the name is one
    path component without control characters, cut to fit a file system's 255 bytes."""
    local, _, domain = mailbox(address, checked=True).unicode_address.rpartition("@")
    shown = _UNSAFE.sub("_", f"{local}@{domain.lower()}")
    if len(shown) > _MAX_SHOWN_BYTES // 4:  # only then can its UTF-8 form be too long
        shown = shown.encode()[:_MAX_SHOWN_BYTES].decode("utf-8", "ignore")
    return f"{seq:06d}-{shown}.eml"


# `\w` is a letter, a digit (of any script) or `_`: never a separator, a control or a format
# character (such as the bidirectional overrides).
_UNSAFE = re.compile(r"[^\w@.+-]")
_MAX_SHOWN_BYTES = 200  # of the 255 a name may have, with room for the number and `.eml`
