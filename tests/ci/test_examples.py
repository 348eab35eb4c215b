"""The CI examples (examples/ci/) and the action's definition (action.yml): each parses, uses
only what exists, and takes its secrets from the CI's secret store."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO

EXAMPLES = REPO / "examples" / "ci"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


ACTION = load(REPO / "action.yml")
SECRET_NAMES = ("SMTP_PASSWORD", "SMTP_USERNAME", "SMTP_HOST")


def expressions(value: Any) -> list[str]:
    """Every `${{ ... }}` in a document, inside."""
    return [m.strip() for m in re.findall(r"\$\{\{(.*?)\}\}", json.dumps(value))]


@pytest.mark.parametrize(
    "name",
    ["github-matrix.yml", "gitlab-parallel.yml", "k8s-indexed-job.yaml", "github-actions.yml"],
)
def test_each_example_parses_and_holds_no_secret(name: str) -> None:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    assert isinstance(yaml.safe_load(text), dict)
    for line in text.splitlines():
        if re.search(r"SMTP_PASSWORD\s*[:=]", line) and not line.lstrip().startswith("#"):
            assert "secrets.SMTP_PASSWORD" in line, line  # only ever from the secret store


def test_the_action_runs_the_script_with_its_inputs_and_declares_its_outputs() -> None:
    assert ACTION["runs"]["using"] == "composite"
    steps = ACTION["runs"]["steps"]
    inputs = set(ACTION["inputs"])
    assert {"job", "command", "args", "version"} <= inputs
    for found in expressions(steps):
        if found.startswith("inputs."):
            assert found.split(".")[1].split()[0] in inputs, found
    [script] = [s for s in steps if "action.py" in s.get("run", "")]
    assert script["run"] == 'python3 "$GITHUB_ACTION_PATH/scripts/action.py"'
    assert (REPO / "scripts" / "action.py").is_file()
    # inputs reach the script through the environment, never spliced into its command line
    assert "${{" not in script["run"]
    assert {
        f"INPUT_{name.upper()}" for name in ("job", "command", "args", "report", "version")
    } == (set(script["env"]))
    ids = {s["id"] for s in steps if "id" in s}
    for name, output in ACTION["outputs"].items():
        step_id, _, output_name = (
            output["value"].strip("${} ").removeprefix("steps.").partition(".outputs.")
        )
        assert (step_id, output_name) == (script["id"], name), output
        assert step_id in ids
    assert {"report", "sent", "failed", "exit-code"} <= set(ACTION["outputs"])


def test_the_github_matrix_sends_shards_and_merges_their_reports() -> None:
    workflow = load(EXAMPLES / "github-matrix.yml")
    send, merge = workflow["jobs"]["send"], workflow["jobs"]["merge"]
    shards = send["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1))
    [mail] = [s for s in send["steps"] if s.get("uses") == "./"]
    required = {name for name, spec in ACTION["inputs"].items() if spec.get("required")}
    assert required <= set(mail["with"]) <= set(ACTION["inputs"])
    assert mail["with"]["command"] in ("run", "validate", "check")
    assert f"--shard ${{{{ matrix.shard }}}}/{len(shards)}" in mail["with"]["args"]
    for name in SECRET_NAMES:
        assert mail["env"][name] == f"${{{{ secrets.{name} }}}}"
    # every output read from the action is one it declares
    for found in expressions(workflow):
        if found.startswith("steps.mail.outputs."):
            assert found.removeprefix("steps.mail.outputs.").split()[0] in ACTION["outputs"]
    uploads = [s for s in send["steps"] if str(s.get("uses", "")).startswith("actions/upload-")]
    assert [u["with"]["path"] for u in uploads] == ["${{ steps.mail.outputs.report }}"]
    assert uploads[0]["with"]["name"] == "batchmail-report-${{ matrix.shard }}"

    assert merge["needs"] == "send"
    assert merge["if"] == "always()"
    [download] = [s for s in merge["steps"] if "download-artifact" in str(s.get("uses"))]
    assert download["with"]["pattern"] == "batchmail-report-*"
    [command] = [s["run"] for s in merge["steps"] if "batchmail merge" in s.get("run", "")]
    reports = re.findall(r"reports/report-(\d+)\.json", command)
    assert reports == [str(n) for n in shards]  # each shard's report, so a missing one is said
    assert command.endswith("--report merged.json --junit junit.xml --failed-csv failed.csv")


def test_the_gitlab_example_runs_parallel_shards_with_shard_auto() -> None:
    pipeline = load(EXAMPLES / "gitlab-parallel.yml")
    mail, merge = pipeline["mail"], pipeline["merge"]
    count = mail["parallel"]
    [run] = [line for line in mail["script"] if line.startswith("batchmail run")]
    assert "--shard auto" in run
    assert '--report "report-$CI_NODE_INDEX.json"' in run
    assert mail["retry"]["exit_codes"] == [75]
    [command] = [line for line in merge["script"] if line.startswith("batchmail merge")]
    assert re.findall(r"report-(\d+)\.json", command) == [str(n) for n in range(1, count + 1)]
    assert "--report merged.json --junit junit.xml --failed-csv failed.csv" in command
    assert merge["artifacts"]["reports"]["junit"] == "junit.xml"


def test_the_kubernetes_example_is_an_indexed_job_with_shard_auto() -> None:
    job = load(EXAMPLES / "k8s-indexed-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    [container] = spec["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["batchmail", "run", "jobs/report.yaml"]
    assert command[command.index("--shard") + 1] == "auto"
    assert command[command.index("--shard-count") + 1] == str(spec["completions"])
    assert container["envFrom"] == [{"secretRef": {"name": "batchmail-smtp"}}]
    assert "SMTP_PASSWORD" not in json.dumps(container["env"])
