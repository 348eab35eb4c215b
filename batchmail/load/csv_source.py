"""Rows of a .csv or .tsv file as spreadsheets export them: in the job's encoding (UTF-8 or
UTF-16 by their BOM otherwise), the delimiter sniffed from the header row unless given."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchmail.errors import invalid
from batchmail.load.rows import Row
from batchmail.load.settings import DataFileOptions
from batchmail.load.text_encoding import EncodedText

DELIMITERS = (",", ";", "\t", "|")  # a tie goes to the first


def csv_rows(path: Path, shown: str, options: DataFileOptions) -> Iterator[Row]:
    with EncodedText(path, options.encoding) as source:
        try:
            yield from table_rows(source.text, shown, options.delimiter, path.suffix.lower())
        except UnicodeDecodeError:
            raise source.decode_error(shown, given=options.encoding is not None) from None


def table_rows(
    lines: Iterable[str], shown: str, delimiter: str | None, suffix: str
) -> Iterator[Row]:
    """The rows of a delimited table given as lines; the first line is the header."""
    stream = iter(lines)
    first = next(stream, "")
    if delimiter is None:
        delimiter = "\t" if suffix == ".tsv" else sniff_delimiter(first)
    reader = csv.reader(itertools.chain([first], stream), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a BOM the encoding named did not eat
    _check_header(header, shown, delimiter)
    start = reader.line_num + 1  # a quoted field may span lines: name the row's first
    for values in reader:
        origin, start = f"{shown}:{start}", reader.line_num + 1
        if not any(values):
            continue
        if len(values) != len(header):
            raise invalid(origin, f"this row has {len(values)} fields, the header {len(header)}")
        yield Row(dict(zip(header, values, strict=True)), origin)


def sniff_delimiter(header: str) -> str:
    """The delimiter that splits the header row into the most fields (quotes respected)."""
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equals


def _check_header(header: list[str], shown: str, delimiter: str) -> None:
    if "email" in header:
        return
    if any(h.lower() == "email" for h in header):
        hint = " (the header must name it exactly 'email')"
    elif len(header) == 1 and any(d in header[0] for d in DELIMITERS if d != delimiter):
        hint = f" (read with the delimiter {delimiter!r}: set recipients_file's `delimiter`)"
    else:
        hint = ""
    raise invalid(f"{shown}:1", f"the header row has no 'email' column{hint}")
