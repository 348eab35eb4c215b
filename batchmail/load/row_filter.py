"""`where:`: the rows a job's expression rejects are not recipients; they are counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from batchmail.errors import InvalidJobError, Problem
from batchmail.load.rows import Row

# The compiled expression: whether a row is kept; an InvalidJobError naming the row when it
# cannot be evaluated (the templates' sandbox compiles it: build/render.py).
RowTest = Callable[[Mapping[str, Any], str], bool]


class RowSelection:
    """Applies a row test to a stream of rows, counting the rows it rejects."""

    def __init__(self, test: RowTest):
        self.test = test
        self.rejected = 0

    def kept(self, rows: Iterable[Row], problems: list[Problem]) -> Iterator[Row]:
        """The rows the test keeps; a row it cannot decide on goes to `problems`."""
        self.rejected = 0
        for row in rows:
            try:
                keep = self.test(row.fields, row.origin)
            except InvalidJobError as exc:
                problems.extend(exc.problems)
                continue
            if keep:
                yield row
            else:
                self.rejected += 1
