"""The `recipients_file` key's options (`{path, encoding, delimiter, sheet}`), checked beyond
what the schema says: an encoding Python knows, and each option only for the files it reads."""

from __future__ import annotations

import codecs
from pathlib import PurePath
from typing import Any

from batchmail.errors import invalid
from batchmail.load.settings import DataFileOptions
from batchmail.load.yaml_file import Located

TEXT_TABLES = (".csv", ".tsv")
WORKBOOKS = (".xlsx",)
_NOT_DELIMITERS = frozenset('"\r\n')


def data_file_options(data: dict[str, Any], doc: Located) -> DataFileOptions:
    found = data.get("recipients_file")
    if not isinstance(found, dict):
        return DataFileOptions()
    suffix = PurePath(found["path"]).suffix.lower()
    for key, kinds, what in (
        ("encoding", TEXT_TABLES, "a .csv or .tsv file"),
        ("delimiter", TEXT_TABLES, "a .csv or .tsv file"),
        ("sheet", WORKBOOKS, "an .xlsx workbook"),
    ):
        if key in found and suffix not in kinds:
            raise _fail(doc, key, f"{key} is for {what}, not {suffix}")
    encoding = found.get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _fail(doc, "encoding", f"unknown encoding {encoding!r}") from None
    delimiter = found.get("delimiter")
    if delimiter is not None and delimiter in _NOT_DELIMITERS:
        raise _fail(doc, "delimiter", f"{delimiter!r} cannot separate fields")
    return DataFileOptions(encoding=encoding, delimiter=delimiter, sheet=found.get("sheet"))


def _fail(doc: Located, key: str, message: str) -> Exception:
    return invalid(doc.where(("recipients_file", key)), message, f"recipients_file.{key}")
