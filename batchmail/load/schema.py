"""The job JSON schema, and its errors explained as a user reads them: located, with the key
that was meant when one is close."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from batchmail.errors import Problem
from batchmail.load.yaml_file import Located, dotted_path
from batchmail.load.yaml_file import Path as DocPath

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError


@cache
def schema_text() -> str:
    from importlib import resources  # noqa: PLC0415 - see _validator

    return resources.files("batchmail").joinpath("job.schema.json").read_text(encoding="utf-8")


@cache
def _validator() -> Draft202012Validator:
    # jsonschema takes a tenth of a run's start to import: it is loaded where a schema is
    # checked, which the command line does in a process of its own (see schema_check.py).
    from jsonschema import Draft202012Validator  # noqa: PLC0415

    return Draft202012Validator(json.loads(schema_text()))


def schema_problems(doc: Located) -> Iterator[Problem]:
    """Every schema problem of the document, each with its line."""
    if not isinstance(doc.data, dict):
        yield Problem(
            f"{doc.filename}:1",
            "a job file is a mapping of keys such as version, from, "
            "subject, template, recipients and smtp",
        )
        return
    for error in _validator().iter_errors(doc.data):
        yield from _explain(error, doc)


def _explain(error: ValidationError, doc: Located) -> Iterator[Problem]:
    path: DocPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        yield from _unknown_keys(error, doc, path)
    elif error.validator == "oneOf" and error.context:
        for sub in _closest_branch(error):
            yield from _explain(sub, doc)
    elif error.validator == "enum":
        choices: list[Any] = list(error.validator_value)  # type: ignore[arg-type]
        yield Problem(
            doc.where(path),
            _with_suggestion(
                f"{error.instance!r} is not one of {', '.join(map(str, choices))}",
                error.instance,
                choices,
            ),
            dotted_path(path),
        )
    elif error.validator in ("pattern", "not") and _description(error):
        # A regular expression (or "should not be valid under {...}") tells a user little;
        # the field's description says what the value must be.
        yield Problem(
            doc.where(path),
            f"{error.instance!r} does not fit: {_description(error)}",
            dotted_path(path),
        )
    else:
        yield Problem(doc.where(path), error.message, dotted_path(path))


def _description(error: ValidationError) -> str:
    schema = error.schema
    return str(schema.get("description", "")) if isinstance(schema, Mapping) else ""


def _unknown_keys(error: ValidationError, doc: Located, path: DocPath) -> Iterator[Problem]:
    schema: dict[str, Any] = error.schema  # type: ignore[assignment]
    known = list(schema.get("properties", {}))
    instance: dict[str, Any] = error.instance  # type: ignore[assignment]
    for key in instance:
        if key in known:
            continue
        key_path = (*path, key)
        if key == "password" and path == ("smtp",):
            message = (
                "a literal password is refused: put it in an environment variable and "
                "give that variable's name as password_env"
            )
        else:
            message = _with_suggestion("unknown key", key, known)
        yield Problem(doc.where(key_path), message, dotted_path(key_path))


def _with_suggestion(message: str, value: object, choices: list[Any]) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"{message} (did you mean '{close[0]}'?)" if close else message


def _closest_branch(error: ValidationError) -> list[ValidationError]:
    """Of a oneOf's branches, the errors of the one whose type the value has."""
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or []:
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    for subs in by_branch.values():
        if not any(s.validator == "type" and not s.relative_path for s in subs):
            return subs
    return [error.context[0]] if error.context else []
