"""A recipients file's rows, streamed where the format allows: .csv, .json, .jsonl, .yaml."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.load.job import display_path
from batchmail.load.yaml_file import load_yaml


class Row(Struct, frozen=True):
    fields: Mapping[str, Any]
    origin: str
    path: str = ""  # where the row sits in the job file (`recipients[2].`), for inline ones


def read_data_file(path: Path, where: str) -> Iterator[Row]:
    """Rows of a .csv, .json, .jsonl or .yaml file, streamed where the format allows."""
    shown = display_path(path)
    readers = {
        ".csv": _csv_rows,
        ".json": _json_rows,
        ".jsonl": _jsonl_rows,
        ".yaml": _yaml_rows,
        ".yml": _yaml_rows,
    }
    reader = readers[path.suffix.lower()]
    try:
        yield from reader(path, shown)
    except FileNotFoundError:
        raise invalid(where, f"recipients file not found: {shown}", "recipients_file") from None
    except UnicodeDecodeError as exc:
        raise invalid(shown, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise invalid(where, f"cannot read {shown}: {exc.strerror}", "recipients_file") from None


def _text(path: Path) -> TextIO:
    return path.open(encoding="utf-8-sig", newline="")  # a spreadsheet's BOM is not data


def _csv_rows(path: Path, shown: str) -> Iterator[Row]:
    with _text(path) as stream:
        yield from _csv_stream(stream, shown)


def _csv_stream(stream: TextIO, shown: str) -> Iterator[Row]:
    reader = csv.reader(stream)
    header = [name.strip() for name in next(reader, [])]
    if "email" not in header:
        hint = (
            " (the header must name it exactly 'email')"
            if any(h.lower() == "email" for h in header)
            else ""
        )
        raise invalid(f"{shown}:1", f"the header row has no 'email' column{hint}")
    start = reader.line_num + 1  # a quoted field may span lines: name the row's first
    for values in reader:
        origin, start = f"{shown}:{start}", reader.line_num + 1
        if not any(values):
            continue
        if len(values) != len(header):
            raise invalid(origin, f"this row has {len(values)} fields, the header {len(header)}")
        yield Row(dict(zip(header, values, strict=True)), origin)


def _json_rows(path: Path, shown: str) -> Iterator[Row]:
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


def _jsonl_rows(path: Path, shown: str) -> Iterator[Row]:
    with _text(path) as stream:
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


def _yaml_rows(path: Path, shown: str) -> Iterator[Row]:
    with _text(path) as stream:
        doc = load_yaml(stream.read(), shown)
    items: Iterable[Any] = doc.data if isinstance(doc.data, list) else [doc.data]
    for index, item in enumerate(items):
        origin = doc.where((index,))
        yield Row(_as_mapping(item, origin), origin)


def _as_mapping(item: Any, origin: str) -> Mapping[str, Any]:
    if not isinstance(item, dict) or "email" not in item:
        raise invalid(origin, "each recipient is an object with an 'email' field")
    return item
