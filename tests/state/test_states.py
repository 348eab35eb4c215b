"""The states, statuses and exit codes users and scripts see: their values never change."""

from __future__ import annotations

import re
from pathlib import Path

from batchmail import errors
from batchmail.send.halt import HaltReason
from batchmail.state.states import DeliveryState, RunStatus

README = Path(__file__).parents[2] / "README.md"


def test_stored_and_reported_values_are_unchanged() -> None:
    assert [s.value for s in DeliveryState] == [
        "pending",
        "sent",
        "failed",
        "deferred",
        "unknown",
        "previewed",
        "skipped",
        "suppressed",
    ]
    assert {s.value for s in RunStatus} == {
        "completed",
        "incomplete",
        "interrupted",
        "quota",
        "connection_failed",
        "sender_refused",
        "invalid",
        "error",
    }
    assert {r.value for r in HaltReason} == {
        "interrupted",
        "quota",
        "connection",
        "sender_refused",
        "error",
    }


def test_every_exit_code_is_named_and_in_the_readme_table() -> None:
    named = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    table = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n\n")[1]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert listed == named
    assert 70 in named
