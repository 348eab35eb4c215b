"""The rows of a job's recipients file, streamed: .csv, .tsv, .xlsx, .json, .jsonl, .yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from batchmail.errors import invalid
from batchmail.load.csv_source import csv_rows
from batchmail.load.job import display_path
from batchmail.load.rows import Row, json_rows, jsonl_rows, yaml_rows
from batchmail.load.settings import DataFileOptions
from batchmail.load.text_encoding import EncodedText

Reader = Callable[[Path, str, DataFileOptions], Iterator[Row]]


def read_data_file(path: Path, where: str, options: DataFileOptions) -> Iterator[Row]:
    """Rows of the recipients file; `where` is the job file's line that names it."""
    shown = display_path(path)
    reader = _READERS[path.suffix.lower()]
    try:
        yield from reader(path, shown, options)
    except FileNotFoundError:
        raise invalid(where, f"recipients file not found: {shown}", "recipients_file") from None
    except UnicodeDecodeError:  # a .csv names its encoding, the other text files are UTF-8
        with EncodedText(path, None) as source:
            raise source.decode_error(shown, given=False, settable=False) from None
    except OSError as exc:
        raise invalid(where, f"cannot read {shown}: {exc.strerror}", "recipients_file") from None


def _xlsx_rows(path: Path, shown: str, options: DataFileOptions) -> Iterator[Row]:
    from batchmail.load.xlsx_source import xlsx_rows  # noqa: PLC0415 - openpyxl: workbooks only

    return xlsx_rows(path, shown, options.sheet)


_READERS: dict[str, Reader] = {
    ".csv": csv_rows,
    ".tsv": csv_rows,
    ".xlsx": _xlsx_rows,
    ".json": lambda path, shown, _: json_rows(path, shown),
    ".jsonl": lambda path, shown, _: jsonl_rows(path, shown),
    ".yaml": lambda path, shown, _: yaml_rows(path, shown),
    ".yml": lambda path, shown, _: yaml_rows(path, shown),
}
