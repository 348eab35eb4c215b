"""Rows of an .xlsx workbook, streamed with openpyxl in read-only mode: the first sheet (or the
one named), the first row as the header, every cell as text the way a person sees it."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from openpyxl.cell.text import Text
from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.cell import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.worksheet._reader import ROW_TAG, WorkSheetParser
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS
from openpyxl.xml.functions import iterparse  # defusedxml's, when installed

from batchmail.errors import invalid
from batchmail.load.rows import Row

_STRING_ITEM = f"{{{SHEET_MAIN_NS}}}si"
_SHEET_DATA = f"{{{SHEET_MAIN_NS}}}sheetData"
_PLAIN_SHEET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_STRINGS_CACHE_SIZE = -512  # SQLite's page cache, KiB: see recipients.py
# What a damaged or foreign file raises: not a zip, a part missing, XML that does not parse
# (ParseError is a SyntaxError), a value of the wrong form.
_BROKEN = (zipfile.BadZipFile, KeyError, SyntaxError, ValueError, TypeError)


def xlsx_rows(path: Path, shown: str, sheet: str | None) -> Iterator[Row]:
    workbook = _open(path, shown)
    try:
        names = workbook.sheetnames
        if sheet is not None and sheet not in names:
            listed = ", ".join(repr(name) for name in names)
            raise invalid(shown, f"no sheet {sheet!r} in this workbook (its sheets: {listed})")
        worksheet = workbook[sheet or names[0]]
        place = f"{shown}:{_sheet_reference(worksheet.title)}!"
        yield from _sheet_rows(_sheet_values(worksheet), place)
    except _BROKEN as exc:
        raise invalid(shown, f"cannot read this workbook ({type(exc).__name__}: {exc})") from None
    finally:
        workbook.close()


def _open(path: Path, shown: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with warnings.catch_warnings():  # about styles and extensions it skips: not the data
            warnings.simplefilter("ignore")
            reader = _StreamingReader(str(path), read_only=True, data_only=True, keep_links=False)
            reader.read()
    except (InvalidFileException, *_BROKEN) as exc:
        raise invalid(shown, f"not an .xlsx workbook ({exc})") from None
    return reader.wb


def _sheet_values(worksheet: Any) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cell values) of each row in the sheet, read as openpyxl's read-only sheet
    reads them, but without keeping anything of the rows read: it keeps an emptied element per
    row (and a record of every row with a height), as large as the sheet."""
    book = worksheet.parent
    with worksheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            worksheet._shared_strings,
            data_only=True,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        rows_parent = None
        for event, element in iterparse(source, events=("start", "end")):
            if event == "start":
                rows_parent = element if element.tag == _SHEET_DATA else rows_parent
            elif element.tag == ROW_TAG:
                number, cells = parser.parse_row(element)
                parser.row_dimensions.clear()
                values: list[Any] = [None] * max((cell["column"] for cell in cells), default=0)
                for cell in cells:
                    values[cell["column"] - 1] = cell["value"]
                yield number, values
                if rows_parent is not None:
                    rows_parent.clear()


def _sheet_rows(rows: Iterable[tuple[int, list[Any]]], place: str) -> Iterator[Row]:
    stream = iter(rows)
    first, values = next(stream, (1, []))
    header = [cell_text(value).strip() for value in values]
    if "email" not in header:
        raise invalid(f"{place}A{first}", "the header row has no 'email' column")
    cells = {name: f"{place}{get_column_letter(i)}" for i, name in enumerate(header, 1) if name}
    email = cells["email"]
    for number, values in stream:
        texts = [cell_text(value) for value in values]
        if not any(texts):
            continue
        fields = {name: "" for name in cells}
        for index, value in enumerate(texts):
            name = header[index] if index < len(header) else ""
            if name:
                fields[name] = value
            elif value:
                where = f"{place}{get_column_letter(index + 1)}{number}"
                raise invalid(where, f"{value!r} is in a column without a header")
        yield Row(fields, f"{email}{number}", cells=cells, number=number)


def cell_text(value: Any) -> str:
    """A cell's value as a person reads it in the sheet: dates in ISO 8601, whole numbers
    without `.0`, booleans as Excel shows them, an empty cell empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _sheet_reference(title: str) -> str:
    """A sheet's name as a formula writes it: quoted unless a plain word."""
    if _PLAIN_SHEET_NAME.fullmatch(title):
        return title
    escaped = title.replace("'", "''")
    return f"'{escaped}'"


class _StreamingReader(ExcelReader):
    """openpyxl's reader, but with the workbook's shared strings (every text cell's value, once)
    in a temporary database on disk: openpyxl keeps them in a list, as large as the sheet."""

    def read_strings(self) -> None:
        strings = _DiskStrings()
        package: Any = self.package
        part = package.find(SHARED_STRINGS)
        if part is not None:
            with self.archive.open(part.PartName[1:]) as source:
                strings.fill(_string_items(source))
        self.shared_strings: Any = strings  # read by index, as the list was

    def read_worksheets(self) -> None:
        """The read-only sheets (chart sheets hold no rows), each opened without its size."""
        parser: Any = self.parser
        book: Any = self.wb
        for sheet, rel in parser.find_sheets():
            if rel.target in self.valid_files and "chartsheet" not in rel.Type:
                worksheet = _UnsizedSheet(book, sheet.name, rel.target, self.shared_strings)
                worksheet.sheet_state = sheet.state
                book._sheets.append(worksheet)


class _UnsizedSheet(ReadOnlyWorksheet):
    """A sheet whose size is not read when it is opened: to learn it from a file that does not
    record it (no <dimension>), openpyxl would build the whole sheet in memory. The rows are
    read without it (`_sheet_values`)."""

    def _get_size(self) -> None:
        return None


def _string_items(source: Any) -> Iterator[str]:
    """The strings of sharedStrings.xml, as openpyxl's `read_string_table` reads them."""
    root = None
    for event, node in iterparse(source, events=("start", "end")):
        if root is None:
            root = node
        if event == "end" and node.tag == _STRING_ITEM:
            text: Any = Text.from_tree(node)
            yield text.content.replace("x005F_", "")
            root.clear()  # the items read so far: dropped, so the table streams


class _DiskStrings:
    """A list of strings in a temporary SQLite file, indexed from 0."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a temporary file, deleted when closed
        self.db.execute(f"PRAGMA cache_size={_STRINGS_CACHE_SIZE}")
        self.db.execute("CREATE TABLE strings (i INTEGER PRIMARY KEY, value TEXT)")
        self.get = lru_cache(maxsize=4096)(self._get)  # categories repeat: plans, teams, ...

    def fill(self, items: Iterable[str]) -> None:
        self.db.executemany("INSERT INTO strings VALUES (?, ?)", enumerate(items))

    def __getitem__(self, index: int) -> str:
        return self.get(index)

    def _get(self, index: int) -> str:
        found = self.db.execute("SELECT value FROM strings WHERE i = ?", (index,)).fetchone()
        if found is None:
            raise IndexError(index)
        value: str = found[0]
        return value
