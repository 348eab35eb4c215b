"""A tool call whose arguments do not fit the tool's schema, said in one line that names each
argument and what it needs (the SDK's own text is a multi-line validation dump with a URL)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# What to do about a missing argument, where the name alone does not say it.
HINTS = {"token": "the token preview_job returned for this job: preview it first"}
# What a pattern stands for, by argument.
_ONE_LINE = "one line: no line break (CR, LF or another line separator) and no NUL"
_PATH = "a path that is not blank and has no NUL character"
PATTERNS = {
    "token": "the 64 hex digits preview_job returned for this job: preview it first",
    "subject": _ONE_LINE,
    "to": _ONE_LINE,
    "cc": _ONE_LINE,
    "bcc": _ONE_LINE,
    "path": _PATH,
    "attachments": _PATH,
}


def refusal(tool: str, error: ValidationError) -> str:
    """`tool: the argument 'to' is missing; the argument 'limit' must be at most 20`."""
    said: dict[str, str] = {}
    for problem in error.errors(include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        said.setdefault(name, _need(name, problem))  # a union's first alternative is enough
    return f"{tool}: " + "; ".join(said.values())


def _need(name: str, problem: Any) -> str:
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "missing":
        hint = HINTS.get(name)
        return f"the argument {name!r} is missing" + (f" ({hint})" if hint else "")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        need = "must be a whole number"
    elif kind == "greater_than_equal":
        need = f"must be at least {context['ge']}"
    elif kind == "less_than_equal":
        need = f"must be at most {context['le']}"
    elif kind == "string_too_long":
        need = f"must be at most {context['max_length']} characters"
    elif kind == "string_too_short":
        least = context["min_length"]
        need = "must not be empty" if least == 1 else f"must be at least {least} characters"
    elif kind == "too_long":
        need = f"must have at most {context['max_length']} items"
    elif kind == "string_pattern_mismatch":
        need = "must be " + PATTERNS.get(name, f"text matching {context['pattern']}")
    elif kind == "string_type":
        need = "must be a string"
    elif kind == "list_type":
        need = "must be a list"
    else:
        message = str(problem["msg"])
        need = message[:1].lower() + message[1:]
    return f"the argument {name!r} {need}"
