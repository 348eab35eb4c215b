"""Appending to a job's suppression file: the addresses it does not list yet, one a line (a row
of its `email` column for a `.csv`), the file created when missing."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from batchmail.errors import StateError
from batchmail.load.addresses import AddressError, Mailbox, mailbox


class Listed:
    """What a suppression file holds already, as matching keys: addresses and @domains."""

    def __init__(self, text: str, is_csv: bool):
        self.addresses: set[str] = set()
        self.domains: set[str] = set()
        self.columns: list[str] = []
        for entry in _csv_cells(text, self) if is_csv else text.splitlines():
            self._add(entry.strip())

    def _add(self, entry: str) -> None:
        if not entry or entry.startswith("#"):
            return
        try:
            if entry.startswith("@"):
                self.domains.add(mailbox(f"postmaster{entry}").domain_key)
            else:
                self.addresses.add(mailbox(entry).key)
        except AddressError:
            return  # not ours to judge here: the run that reads the file names it

    def holds(self, address: Mailbox) -> bool:
        return address.key in self.addresses or address.domain_key in self.domains


def _csv_cells(text: str, listed: Listed) -> list[str]:
    """The `email` column's cells when the header names one, else the first column's."""
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return []
    column = 0
    if rows[0] and ("email" in [c.lower() for c in rows[0]] or "@" not in rows[0][0]):
        listed.columns = rows[0]
        names = [c.lower() for c in rows[0]]
        column = names.index("email") if "email" in names else 0
        rows = rows[1:]
    return [row[column] for row in rows if column < len(row)]


def append_new(path: Path, addresses: Iterable[Mailbox]) -> list[Mailbox]:
    """Append the addresses the file does not hold (by address or domain); those appended."""
    is_csv = path.suffix.lower() == ".csv"
    try:
        text = path.read_text(encoding="utf-8-sig") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read the suppression file {path}: {exc}") from None
    listed = Listed(text, is_csv)
    added: list[Mailbox] = []
    for address in addresses:
        if not listed.holds(address):
            listed.addresses.add(address.key)
            added.append(address)
    if added:
        _write(path, text, _lines(added, listed.columns if is_csv else None))
    return added


def _lines(added: list[Mailbox], columns: list[str] | None) -> str:
    if columns is None:
        return "".join(f"{address.address}\n" for address in added)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [c.lower() for c in columns]
    column = names.index("email") if "email" in names else 0
    for address in added:
        row = [""] * max(len(columns), 1)
        row[column] = address.address
        writer.writerow(row)
    return out.getvalue()


def _write(path: Path, text: str, lines: str) -> None:
    """Append in one write, after a line break if the file's last line lacks one."""
    prefix = "\n" if text and not text.endswith(("\n", "\r")) else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8", newline="") as file:
            file.write(prefix + lines)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise StateError(f"cannot write the suppression file {path}: {exc}") from None
