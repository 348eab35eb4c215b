"""A recipient's row as read, and the rows of the .json, .jsonl and .yaml files."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.load.yaml_file import load_yaml


class Row(Struct, frozen=True):
    fields: Mapping[str, Any]
    origin: str
    path: str = ""  # where the row sits in the job file (`recipients[2].`), for inline ones
    cells: Mapping[str, str] | None = None  # a workbook's: field -> `file:sheet!B` (its column)
    number: int = 0  # a workbook's row number

    def at(self, field: str) -> str:
        """Where a field's value is: its cell in a workbook, else the row's origin."""
        column = self.cells.get(field) if self.cells is not None else None
        return f"{column}{self.number}" if column is not None else self.origin


def text(path: Path) -> TextIO:
    return path.open(encoding="utf-8-sig", newline="")  # a BOM is not data


def json_rows(path: Path, shown: str) -> Iterator[Row]:
    import ijson  # noqa: PLC0415 - its C backend takes a while to load: JSON lists only

    with path.open("rb") as stream:
        if stream.read(3) != codecs.BOM_UTF8:
            stream.seek(0)
        try:
            for index, item in enumerate(ijson.items(stream, "item", use_float=True), start=1):
                origin = f"{shown}: item {index}"
                yield Row(_as_mapping(item, origin), origin)
        except ijson.JSONError as exc:
            raise invalid(shown, f"invalid JSON ({exc}); expected a list of objects") from None


def jsonl_rows(path: Path, shown: str) -> Iterator[Row]:
    with text(path) as stream:
        yield from _jsonl_stream(stream, shown)


def _jsonl_stream(stream: TextIO, shown: str) -> Iterator[Row]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        origin = f"{shown}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise invalid(origin, f"invalid JSON: {exc.msg}") from None
        except RecursionError:  # the decoder recurses once a level
            raise invalid(origin, "nested too deep to read: refused") from None
        yield Row(_as_mapping(item, origin), origin)


def yaml_rows(path: Path, shown: str) -> Iterator[Row]:
    with text(path) as stream:
        doc = load_yaml(stream.read(), shown)
    items: Iterable[Any] = doc.data if isinstance(doc.data, list) else [doc.data]
    for index, item in enumerate(items):
        origin = doc.where((index,))
        yield Row(_as_mapping(item, origin), origin)


def _as_mapping(item: Any, origin: str) -> Mapping[str, Any]:
    if not isinstance(item, dict) or "email" not in item:
        raise invalid(origin, "each recipient is an object with an 'email' field")
    return item
