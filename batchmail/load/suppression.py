"""Suppression files: the addresses and `@domain`s a job never mails, read once per invocation.

A file is plain text (one address or `@domain` per line; blank lines and `#` comment lines are
ignored) or, named `.csv`, CSV (the `email` column of a header row, else the first column).
UTF-8, with or without a BOM. Matching is two dictionary lookups per recipient, whatever the
size of the lists: by address (`Mailbox.person_key`) and by domain (`Mailbox.domain_key`), both
with IDN domains in A-labels, so that either form of an IDN matches.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.load.addresses import AddressError, Mailbox, mailbox
from batchmail.load.job import display_path
from batchmail.load.settings import Job

_FIELD = "suppress"
_HINT = "a line holds one address (user@example.com) or one domain (@example.com)"


class Suppression(Struct, frozen=True):
    """The entries of a job's suppression files, each with where it is listed (`file:line`)."""

    addresses: dict[str, str]  # person_key -> where
    domains: dict[str, str]  # domain_key -> where

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def listed(self, recipient: Mailbox) -> str | None:
        """Where the recipient is suppressed (`file:line`), or None when it is not."""
        where = self.addresses.get(recipient.person_key) if self.addresses else None
        if where is None and self.domains:
            where = self.domains.get(recipient.domain_key)
        return where

    def count(self, recipients: Iterable[Mailbox]) -> int:
        if not self:
            return 0
        return sum(1 for recipient in recipients if self.listed(recipient) is not None)


NO_SUPPRESSION = Suppression({}, {})


def load_suppression(job: Job) -> Suppression:
    """Every entry of the job's suppression files; a file that cannot be read, or a line that
    is neither an address nor an `@domain`, is a job error naming the file and line."""
    if not job.suppress:
        return NO_SUPPRESSION
    addresses: dict[str, str] = {}
    domains: dict[str, str] = {}
    for path in job.suppress:
        for where, entry in _entries(path, job.suppress_where):
            if entry.startswith("@"):
                domains.setdefault(_domain_key(entry, where), where)
            else:
                addresses.setdefault(_address_key(entry, where), where)
    return Suppression(addresses, domains)


def _address_key(entry: str, where: str) -> str:
    try:
        return mailbox(entry).person_key
    except AddressError as exc:
        raise invalid(where, f"{exc} ({_HINT})", _FIELD) from None


def _domain_key(entry: str, where: str) -> str:
    domain = entry[1:]
    try:
        # A domain is checked as the domain of an address: the same IDNA rules and A-labels.
        return mailbox(f"postmaster@{domain}").domain_key
    except AddressError:
        raise invalid(where, f"{entry!r} is not a valid @domain ({_HINT})", _FIELD) from None


def _entries(path: Path, job_where: str) -> Iterator[tuple[str, str]]:
    """(`file:line`, entry) for every entry of a file, in order."""
    shown = display_path(path)
    text = _read(path, shown, job_where)
    if path.suffix.lower() == ".csv":
        yield from _csv_entries(text, shown)
        return
    for number, line in enumerate(text.split("\n"), start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            yield f"{shown}:{number}", entry


def _csv_entries(text: str, shown: str) -> Iterator[tuple[str, str]]:
    """The `email` column's cells when the first row names one; else the first column's, after
    a first row that holds no address (a header of another name)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    column = 0
    try:
        for index, row in enumerate(reader):
            cells = [cell.strip() for cell in row]
            if index == 0 and _is_header(cells):
                names = [cell.lower() for cell in cells]
                column = names.index("email") if "email" in names else 0
                continue
            entry = cells[column] if column < len(cells) else ""
            if entry and not entry.startswith("#"):
                yield f"{shown}:{reader.line_num}", entry
    except csv.Error as exc:
        raise invalid(f"{shown}:{reader.line_num}", f"not CSV: {exc}", _FIELD) from None


def _is_header(cells: list[str]) -> bool:
    return any(cell.lower() == "email" for cell in cells) or bool(cells and "@" not in cells[0])


def _read(path: Path, shown: str, job_where: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise invalid(
            job_where, f"cannot read the suppression file {shown}: {exc.strerror}", _FIELD
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise invalid(f"{shown}:{line}", "not UTF-8 text: save the file as UTF-8", _FIELD) from None
