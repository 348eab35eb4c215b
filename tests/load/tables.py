"""Recipient files as people's tools write them: CSVs through the csv module in a given
encoding and dialect, workbooks through openpyxl, and the parts of a workbook that only Excel
or LibreOffice write (a shared string table, a formula's cached value) added to those."""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Sequence
from html import escape, unescape
from pathlib import Path
from typing import Any

import openpyxl

Table = Sequence[Sequence[Any]]


def write_csv(
    path: Path,
    table: Table,
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as stream:
        csv.writer(stream, delimiter=delimiter, quoting=quoting, lineterminator="\r\n").writerows(
            table
        )
    return path


def write_xlsx(path: Path, sheets: dict[str, Table]) -> Path:
    """A workbook with these sheets, in order, as openpyxl writes it (inline strings)."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)  # type: ignore[arg-type]
    for title, table in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in table:
            sheet.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


_INLINE = re.compile(
    r'<c r="([A-Z]+[0-9]+)"([^>]*?) t="inlineStr"><is><t(?: [^>]*)?>(.*?)</t></is></c>'
)
_RELS_END = "</Relationships>"
_TYPES_END = "</Types>"


def with_shared_strings(path: Path) -> Path:
    """The workbook rewritten as Excel and LibreOffice write text: each distinct string once in
    xl/sharedStrings.xml, the cells holding its index."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    strings: dict[str, int] = {}

    def shared(match: re.Match[str]) -> str:
        index = strings.setdefault(unescape(match.group(3)), len(strings))
        return f'<c r="{match.group(1)}"{match.group(2)} t="s"><v>{index}</v></c>'

    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = _INLINE.sub(shared, parts[name].decode()).encode()
    items = "".join(
        f'<si><t xml:space="preserve">{escape(s, quote=False)}</t></si>' for s in strings
    )
    parts["xl/sharedStrings.xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        f'count="{len(strings)}" uniqueCount="{len(strings)}">{items}</sst>'
    ).encode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    rel = (
        '<Relationship Id="rIdShared" Target="sharedStrings.xml" Type="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/>'
    )
    parts["xl/_rels/workbook.xml.rels"] = rels.replace(_RELS_END, rel + _RELS_END).encode()
    types = parts["[Content_Types].xml"].decode()
    override = (
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sharedStrings+xml"/>'
    )
    parts["[Content_Types].xml"] = types.replace(_TYPES_END, override + _TYPES_END).encode()
    _write_zip(path, parts)
    return path


def with_cached_value(path: Path, cell: str, value: str) -> Path:
    """A formula cell given the value Excel computed and saved with it (openpyxl saves none)."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    pattern = re.compile(rf'(<c r="{cell}"[^>]*><f>[^<]*</f>)<v ?/>')
    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = pattern.sub(rf"\g<1><v>{value}</v>", parts[name].decode()).encode()
    _write_zip(path, parts)
    return path


def without_used_range(path: Path) -> Path:
    """The workbook without the sheets' <dimension> (their used range), as some writers leave."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = re.sub(rb"<dimension [^>]*/>", b"", parts[name])
    _write_zip(path, parts)
    return path


def _write_zip(path: Path, parts: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(name, data)
