"""Tool results: every outcome as a `CallToolResult`, every failure as one line, no secret in
either, file locations relative to the server's root."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mcp.types import CallToolResult, TextContent

from batchmail.agents.policy import Policy, PolicyError
from batchmail.errors import (
    EXIT_CONNECT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_IO,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    BatchmailError,
    InvalidJobError,
    Problem,
)

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 20_000  # of each previewed body: an agent's context is not a mailbox
MAX_REPORT_RECIPIENTS = 200
MAX_ERROR_CHARS = 1_000

EXIT_MEANINGS = {
    EXIT_OK: "every recipient delivered (now or in an earlier run)",
    EXIT_FAILED: "some recipients failed permanently (5xx); see the report",
    EXIT_INVALID: "the job is invalid: nothing was sent",
    EXIT_CONNECT: "could not connect, negotiate TLS or authenticate: nothing was sent",
    EXIT_SOFTWARE: "a bug in batchmail stopped the run (a sending process died); "
    "run the job again to resume",
    EXIT_IO: "the journal or the report could not be written",
    EXIT_TEMPFAIL: "some recipients are deferred (temporary failures or a quota): "
    "run the job again later to finish",
    EXIT_INTERRUPTED: "interrupted: run the job again to resume",
}


class ToolFailure(Exception):
    """A tool's refusal or failure: a one-line message, and optional structured details."""

    def __init__(self, message: str, data: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.data = dict(data or {})


class Results:
    """Turns what a tool did, or why it did not, into what the agent sees."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def call(self, action: Callable[[], dict[str, Any]]) -> CallToolResult:
        """Run a tool's action; every failure becomes an isError result, never a traceback."""
        try:
            return self._result(action(), error=False)
        except ToolFailure as exc:
            return self.failure(str(exc), exc.data)
        except PolicyError as exc:
            return self.failure(str(exc), {})
        except BatchmailError as exc:
            lines = self._lines(exc)
            more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
            details = {"exit_code": exc.exit_code, "errors": lines}
            return self.failure(lines[0] + more if lines else str(exc), details)
        except Exception:
            log.exception("a batchmail MCP tool failed unexpectedly")
            return self.failure("internal error in the batchmail MCP server (see its log)", {})

    def failure(self, message: str, data: Mapping[str, Any]) -> CallToolResult:
        line = " ".join(message.split())[:MAX_ERROR_CHARS]
        return self._result({"error": line, **data}, error=True)

    def _result(self, data: dict[str, Any], *, error: bool) -> CallToolResult:
        clean: dict[str, Any] = self.policy.redactor.data(data)
        text = clean["error"] if error else json.dumps(clean, indent=2, ensure_ascii=False)
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=clean,
            is_error=error,
        )

    def shown(self, path: Path) -> str:
        """A path as the agent gives it: relative to the root when inside it."""
        root = self.policy.root.path
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def _lines(self, exc: BatchmailError) -> list[str]:
        """The error's lines with their locations relative to the root: the library writes them
        relative to the working directory, which an MCP client chooses at random."""
        if not isinstance(exc, InvalidJobError):
            return [self._within_root(line) for line in exc.lines()]
        problems = [Problem(self._where(p.where), p.message, p.what) for p in exc.problems]
        moved = InvalidJobError(problems, exc.hidden)
        return [self._within_root(line) for line in moved.lines()]

    def _where(self, where: str) -> str:
        """`file:line` or `file`, as the library wrote it, relative to the root."""
        name, colon, line = where.rpartition(":")
        if not (colon and line.isdigit()):
            name, colon, line = where, "", ""
        if not name:
            return where
        path = Path(os.path.abspath(Path.cwd() / name))
        if not (path.is_relative_to(self.policy.root.path) and path.exists()):
            return where  # not a file of the root's ("smtp", say)
        shown = self.shown(path)
        return f"{shown}{colon}{line}"

    def _within_root(self, text: str) -> str:
        """Paths in an error's text, relative to the root."""
        root = self.policy.root.path
        prefixes = [f"{root}{os.sep}"]
        if root.is_relative_to(Path.cwd()) and root != Path.cwd():
            prefixes.append(f"{root.relative_to(Path.cwd())}{os.sep}")
        for prefix in prefixes:  # where a path starts, not inside a longer one
            text = re.sub(rf"(?<![\w./-]){re.escape(prefix)}", "", text)
        return text


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolFailure(f"cannot read the report {path.name}: {exc}") from None
    if not isinstance(data, dict) or "job" not in data or "summary" not in data:
        raise ToolFailure(f"{path.name} is not a batchmail report")
    recipients = data.get("recipients")
    if isinstance(recipients, list) and len(recipients) > MAX_REPORT_RECIPIENTS:
        data["recipients"] = recipients[:MAX_REPORT_RECIPIENTS]
        data["recipients_omitted"] = len(recipients) - MAX_REPORT_RECIPIENTS
    return data


def clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"\n[... {len(text) - MAX_BODY_CHARS:,} more characters]"
