"""The GitHub Action's script (scripts/action.py), run as the runner runs it: inputs in the
environment, its outputs file read back as the runner reads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from smtpserver import Script, SmtpServerFactory
from support import REPO, make_job, recipients

SCRIPT = REPO / "scripts" / "action.py"
ACTION = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))


def read_outputs(text: str) -> dict[str, str]:
    """The runner's reading of a $GITHUB_OUTPUT file: `name=value` lines, and `name<<DELIM`
    followed by the value's lines up to a line that is DELIM alone."""
    outputs: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        heredoc = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if heredoc:
            name, delimiter = heredoc.groups()
            value: list[str] = []
            for item in lines:
                if item == delimiter:
                    break
                value.append(item)
            else:
                pytest.fail(f"no closing delimiter for {name}")
            outputs[name] = "\n".join(value)
        else:
            name, sep, value_text = line.partition("=")
            assert sep, f"not an output line: {line!r}"
            outputs[name] = value_text
    return outputs


class Step:
    """One run of the action's step in a fresh workspace."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.output = workspace.parent / "github_output"
        self.summary = workspace.parent / "step_summary.md"

    def run(self, **inputs: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_ACTION_PATH": str(REPO),
            "INPUT_VERSION": "none",  # batchmail is this checkout, on PYTHONPATH: no network
            **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
        }
        done = subprocess.run(
            [sys.executable, str(SCRIPT)],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done, read_outputs(self.output.read_text(encoding="utf-8"))


@pytest.fixture
def step(tmp_path: Path) -> Step:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return Step(workspace)


def test_the_step_sends_the_job_and_writes_its_outputs(
    step: Step, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    make_job(step.workspace / "jobs", server.port, recipients=recipients(3))
    done, outputs = step.run(job="jobs/job.yaml", args="--junit 'junit results.xml'")
    assert done.returncode == 0, done.stderr

    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
    ]
    assert set(outputs) == set(ACTION["outputs"])  # each declared output, nothing else
    assert outputs["exit-code"] == "0"
    assert (outputs["total"], outputs["sent"], outputs["failed"]) == ("3", "3", "0")
    report = json.loads((step.workspace / outputs["report"]).read_text(encoding="utf-8"))
    assert report["summary"]["sent"] == 3
    assert outputs["report"] == "batchmail-report.json"  # the input's default
    assert "3 sent" in outputs["summary"].splitlines()[-1]
    assert "3 sent" in done.stdout  # the log shows what batchmail printed
    assert (step.workspace / "junit results.xml").is_file()  # args split as a shell would
    assert "| sent | 3 |" in step.summary.read_text(encoding="utf-8").replace("  ", " ")


def test_a_refused_recipient_gives_the_exit_code_and_the_failed_count(
    step: Step, smtp_server: SmtpServerFactory
) -> None:
    refusal = "550 5.1.1 <user2@example.com>: no such user"
    server = smtp_server(script=Script(rcpt_replies={"user2@example.com": [refusal]}))
    make_job(step.workspace, server.port, recipients=recipients(3))
    done, outputs = step.run(job="job.yaml", args="--quiet", report="out/report.json")
    assert done.returncode == 1

    assert len(server.messages) == 2
    assert outputs["exit-code"] == "1"
    assert (outputs["sent"], outputs["failed"]) == ("2", "1")
    assert outputs["report"] == "out/report.json"
    report: dict[str, Any] = json.loads((step.workspace / "out/report.json").read_text())
    [failed] = [r for r in report["recipients"] if r["status"] == "failed"]
    assert (failed["email"], failed["smtp_code"]) == ("user2@example.com", 550)
    assert "user2@example.com" in step.summary.read_text(encoding="utf-8")


def test_validate_sends_nothing_and_an_invalid_job_is_exit_2(
    step: Step, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    make_job(step.workspace, server.port)
    done, outputs = step.run(job="job.yaml", command="validate")
    assert done.returncode == 0, done.stderr
    assert (outputs["exit-code"], outputs["report"], outputs["sent"]) == ("0", "", "0")
    assert outputs["summary"] == "job.yaml: valid: 3 messages"

    make_job(step.workspace, server.port, subject="{{ nobody }}")
    done, outputs = step.run(job="job.yaml")
    assert done.returncode == 2
    assert outputs["exit-code"] == "2"
    assert "'nobody' is undefined" in done.stderr
    report = json.loads((step.workspace / outputs["report"]).read_text(encoding="utf-8"))
    assert any("'nobody' is undefined" in error for error in report["errors"])
    assert (report["summary"]["sent"], outputs["sent"]) == (0, "0")

    (step.workspace / "job.yaml").write_text("version: 1\n", encoding="utf-8")
    done, outputs = step.run(job="job.yaml")
    assert (done.returncode, outputs["exit-code"]) == (2, "2")
    assert outputs["report"] == ""  # refused before a run began: no report, none left over
    assert not (step.workspace / "batchmail-report.json").exists()
    assert server.messages == []


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"job": "job.yaml", "command": "send"}, "command 'send' is not one of run, validate"),
        ({"job": ""}, "job '': give the job file's path"),
        ({"job": "--dry-run"}, "job '--dry-run': give the job file's path"),
        ({"job": "job.yaml", "args": "--report x.json"}, "leave out --report"),
        ({"job": "job.yaml", "args": "'unclosed"}, "args: No closing quotation"),
        ({"job": "job.yaml", "version": "--index-url=x"}, "is not a version number"),
    ],
)
def test_wrong_inputs_are_an_error_annotation_and_exit_2(
    step: Step, smtp_server: SmtpServerFactory, inputs: dict[str, str], expected: str
) -> None:
    server = smtp_server()
    make_job(step.workspace, server.port)
    done, outputs = step.run(**inputs)
    assert done.returncode == 2
    assert done.stdout.startswith("::error title=batchmail action::")
    assert expected in done.stdout
    assert outputs["exit-code"] == "2"
    assert server.connections == 0


def test_a_multiline_value_uses_the_delimiter_syntax(
    step: Step, smtp_server: SmtpServerFactory
) -> None:
    server = smtp_server()
    make_job(step.workspace, server.port)
    done, outputs = step.run(job="job.yaml", command="check")
    assert done.returncode in (0, 1), done.stdout  # a check may warn or fail: no TLS here
    raw = step.output.read_text(encoding="utf-8")
    heredoc = re.search(r"^summary<<(ghadelimiter_[0-9a-f-]{36})\n(.*?)\n\1$", raw, re.M | re.S)
    assert heredoc is not None, raw
    assert heredoc.group(2) == outputs["summary"]
    lines = outputs["summary"].splitlines()
    assert len(lines) > 1
    assert lines == done.stdout.splitlines()[-len(lines) :]
    assert not server.messages
