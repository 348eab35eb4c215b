"""YAML that would make loading take exponential time or blow the stack is refused at once:
anchors and aliases that expand without bound ("billion laughs"), aliases that refer to the
collection holding them, and absurdly deep nesting, as written or through aliases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import REPO, make_job

from batchmail.errors import InvalidJobError
from batchmail.load.yaml_file import load_yaml

LAUGHS = """\
version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def alias_chain(length: int) -> str:
    """Each anchor holds the one before: shallow as written, `length` deep once expanded."""
    lines = ["version: 1", "c0: &c0 [x]"]
    lines += [f"c{n}: &c{n} [*c{n - 1}]" for n in range(1, length + 1)]
    return "\n".join(lines) + "\n"


BOMBS = {
    "laughs": (LAUGHS, 7),  # the first anchor whose expansion passes the limit
    "self-alias": ("version: 1\nvars: &v [1, *v]\n", 2),
    "deep-flow": ("version: 1\nvars: " + "[" * 5000 + "]" * 5000 + "\n", 2),
    "deep-block": (
        "version: 1\nvars:\n" + "".join(f"{'  ' * n}- \n" for n in range(1, 3000)),
        None,
    ),
    "alias-chain": (alias_chain(150), None),
}


def validate(folder: Path, timeout: float = 20) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "batchmail", "validate", "job.yaml"],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("name", BOMBS)
def test_a_job_file_bomb_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    text, line = BOMBS[name]
    (tmp_path / "job.yaml").write_text(text, encoding="utf-8")

    done, _ = validate(tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [message] = done.stderr.splitlines()
    assert message.startswith(f"job.yaml:{line}: " if line else "job.yaml:"), message
    assert message.split(":")[1].isdigit(), message


@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_is_refused_well_under_a_second(name: str) -> None:
    text, _ = BOMBS[name]
    started = time.perf_counter()
    with pytest.raises(InvalidJobError):
        load_yaml(text, "job.yaml")
    assert time.perf_counter() - started < 0.5


def test_a_recipients_file_bomb_is_refused_naming_the_file(tmp_path: Path) -> None:
    row = LAUGHS.replace("version: 1\n", "").replace("\n", "\n  ").rstrip()
    people = f"- email: a@example.com\n  {row}\n"
    (tmp_path / "people.yaml").write_text(people, encoding="utf-8")
    assert yaml.compose(people) is not None  # well-formed: only its size is wrong
    make_job(tmp_path, recipients=None, recipients_file="people.yaml")

    done, _ = validate(tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [message] = done.stderr.splitlines()
    assert message.startswith("people.yaml:7: "), message


def test_anchors_aliases_and_merge_keys_of_a_real_job_still_load() -> None:
    text = """\
defaults: &defaults {team: core, plan: pro}
files: &files [a.pdf, b.pdf]
recipients:
  - {<<: *defaults, email: a@example.com}
  - {<<: *defaults, email: b@example.com}
attachments: *files
"""
    doc = load_yaml(text, "job.yaml")
    assert doc.data["recipients"][0] == {"team": "core", "plan": "pro", "email": "a@example.com"}
    assert doc.data["attachments"] == ["a.pdf", "b.pdf"]
    assert doc.where(("recipients", 1, "email")) == "job.yaml:5"


def test_a_large_honest_document_is_not_mistaken_for_a_bomb() -> None:
    rows = "".join(f"- {{<<: *d, email: user{i}@example.com, n: {i}}}\n" for i in range(5_000))
    doc = load_yaml("- &d {team: core, plan: pro, region: eu}\n" + rows, "people.yaml")
    assert len(doc.data) == 5_001
    assert doc.data[-1]["region"] == "eu"


def test_a_key_beside_a_merge_overrides_the_merged_one() -> None:
    """YAML's merge key: the mapping's own keys win over merged ones, and of several merged
    mappings the first wins (https://yaml.org/type/merge.html); only a key written twice in
    the same mapping is a duplicate."""
    text = """\
defaults: &defaults {team: core, plan: pro}
other: &other {plan: team, region: eu}
one: {<<: *defaults, plan: free}
two: {<<: [*defaults, *other]}
three: {plan: a, plan: b}
"""
    with pytest.raises(InvalidJobError) as caught:
        load_yaml(text, "job.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "job.yaml:5: three: duplicate key 'plan' (first at line 5)"
    ]
    doc = load_yaml(text.replace("three: {plan: a, plan: b}\n", ""), "job.yaml")
    assert doc.data["one"] == {"team": "core", "plan": "free"}
    assert doc.data["two"] == {"team": "core", "plan": "pro", "region": "eu"}
    assert doc.where(("one", "plan")) == "job.yaml:3"
