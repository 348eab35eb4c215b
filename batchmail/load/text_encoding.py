"""A data file's text encoding: UTF-8 (with or without BOM) or UTF-16 with its BOM unless the
job names another; a byte that is not valid in it is one error naming the file, the line and
the byte, with the encoding the file most likely has."""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import BinaryIO, TextIO

from batchmail.errors import InvalidJobError, invalid

_BOMS = (  # the longest first: UTF-32's BOM starts with UTF-16's
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CHUNK = 1 << 16
_SAMPLE = 1 << 20  # enough of a file for charset-normalizer's guess
_CHAOS_TIE = 0.01
# The code pages spreadsheets export in, the most used first (Excel's "CSV" on Windows).
_EXPORTED = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "mac_roman", "cp850")


class EncodedText:
    """A data file opened as text: its encoding, and how many bytes of BOM precede the text."""

    def __init__(self, path: Path, encoding: str | None):
        self.path = path
        self.raw: BinaryIO = path.open("rb")
        self.encoding, self.bom = _encoding(self.raw, encoding)
        self.raw.seek(self.bom)
        # newline="": csv reads the line ends itself, a quoted field may hold one.
        self.text: TextIO = io.TextIOWrapper(self.raw, self.encoding, newline="")

    def __enter__(self) -> EncodedText:
        return self

    def __exit__(self, *_: object) -> None:
        self.text.close()

    def decode_error(self, shown: str, *, given: bool, settable: bool = True) -> InvalidJobError:
        """The error for the file's first byte that is not valid in its encoding. `given`: the
        job named the encoding; `settable`: it may (a .csv or .tsv file), else it is UTF-8."""
        line, offset, byte = _first_bad_byte(self.path, self.encoding, self.bom)
        name = "UTF-8" if self.encoding == "utf-8" else self.encoding
        message = f"byte 0x{byte:02X} at offset {offset} is not {name}"
        guess = likely_encoding(self.path)
        if guess is not None and codecs.lookup(guess).name != codecs.lookup(self.encoding).name:
            message += f": the file looks like {guess}"
            message += f", set recipients_file's `encoding: {guess}`" if settable else ""
        if not settable:
            message += " (this kind of file is read as UTF-8)"
        elif not given and guess is None:
            message += ": set recipients_file's `encoding` to the file's encoding"
        return invalid(f"{shown}:{line}", message)


def _encoding(raw: BinaryIO, given: str | None) -> tuple[str, int]:
    """The encoding to read with, and the length of a BOM to skip."""
    start = raw.read(4)
    for bom, encoding in _BOMS:
        if start.startswith(bom) and (given is None or _same(given, encoding)):
            return encoding, len(bom)
    return given or "utf-8", 0


def _same(given: str, found: str) -> bool:
    # "utf-16" and "utf-8-sig" read their own BOM; a job naming them means the one found
    return codecs.lookup(given).name.replace("-sig", "") in (found, found[:6])


def _first_bad_byte(path: Path, encoding: str, skip: int) -> tuple[int, int, int]:
    """(line, offset in the file, byte) of the first byte not valid in `encoding`."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, lines = skip, 1
    with path.open("rb") as raw:
        raw.seek(skip)
        while True:
            chunk = raw.read(_CHUNK)
            try:
                lines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as exc:
                held = len(exc.object) - len(chunk)  # bytes the decoder held from before
                good = exc.object[: exc.start].decode(encoding, "replace")
                return lines + good.count("\n"), offset - held + exc.start, exc.object[exc.start]
            if not chunk:
                return lines, offset, 0
            offset += len(chunk)


def likely_encoding(path: Path) -> str | None:
    """charset-normalizer's guess at the file's encoding, from its first megabyte. A short file
    reads cleanly in several code pages: of those, the one spreadsheets most often export."""
    from charset_normalizer import from_bytes  # noqa: PLC0415 - only when a file is wrong

    with path.open("rb") as raw:
        matches = list(from_bytes(raw.read(_SAMPLE)))
    if not matches:
        return None
    clean = [m for m in matches if m.chaos <= matches[0].chaos + _CHAOS_TIE]
    readable = {name for match in clean for name in match.could_be_from_charset}
    common = [name for name in _EXPORTED if name in readable]
    return common[0] if common else matches[0].encoding
