"""`batchmail check`'s output: one line per check, or the same as a JSON list."""

from __future__ import annotations

import msgspec

from batchmail.transport.probe import Check


def check_lines(checks: list[Check]) -> str:
    return "".join(f"{c.status:<4} {c.check}: {c.detail}\n" for c in checks)


def check_json(checks: list[Check]) -> str:
    return msgspec.json.encode(checks).decode("utf-8") + "\n"
