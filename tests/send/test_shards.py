"""`run --shard K/N`: a job sent by N processes (often N machines), each recipient once."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from smtpserver import Received, Script, SmtpServer, SmtpServerFactory
from support import cli, make_job, parse, recipients, report_of

from batchmail.load.job import load_job
from batchmail.send.shard import Shard

JOB_SIZE = 40
EVERYONE = {f"user{i}@example.com" for i in range(1, JOB_SIZE + 1)}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BATCHMAIL_STATE_DIR", "CI_NODE_INDEX", "CI_NODE_TOTAL", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)


def shard_of(seq: int, count: int) -> int:
    """The shard (1-based) that sends recipient `seq`: 1, 4, 7... are shard 1 of 3."""
    return (seq - 1) % count + 1


def spawn(job: Path, *args: str | Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHMAIL_STATE_DIR"}
    return subprocess.Popen(
        [sys.executable, "-m", "batchmail", "run", str(job), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def rcpts_once(server: SmtpServer) -> None:
    """The server was given each of the job's recipients in exactly one RCPT TO."""
    assert set(server.rcpts) == EVERYONE
    assert set(server.rcpts.values()) == {1}


def test_three_shards_in_turn_reach_everyone_once_and_a_rerun_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    # Two connections: each shard is split again over two sending processes.
    job = make_job(tmp_path, server.port, recipients=recipients(JOB_SIZE), rate={"connections": 2})
    state = tmp_path / "state"
    for k in (1, 2, 3):
        report = tmp_path / f"shard{k}.json"
        code, out, err = cli(
            capsys, "run", job, "--shard", f"{k}/3", "--state-dir", state, "--report", report
        )
        assert code == 0, err
        assert "shard " + f"{k}/3: rate limits divided by 3" in out
        data = report_of(report)
        assert data["shard"] == {"index": k, "count": 3}
        assert data["job_total"] == JOB_SIZE
        seqs = [r["seq"] for r in data["recipients"]]
        assert seqs == [s for s in range(1, JOB_SIZE + 1) if shard_of(s, 3) == k]
        assert data["summary"]["sent"] == data["summary"]["total"] == len(seqs)
    assert [r["seq"] for r in report_of(tmp_path / "shard1.json")["recipients"]][:3] == [1, 4, 7]
    rcpts_once(server)
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(EVERYONE)
    # Message-IDs are made of the run id and the job-wide sequence number: no two shards share
    # a sequence number, so no two messages share a Message-ID, whatever their runs' ids.
    ids = [parse(m.data)["Message-ID"] for m in server.messages]
    assert len(set(ids)) == JOB_SIZE

    for k in (1, 2, 3):  # each shard again: nothing is sent, every recipient is skipped
        report = tmp_path / f"again{k}.json"
        code, _, err = cli(
            capsys, "run", job, "--shard", f"{k}/3", "--state-dir", state, "--report", report
        )
        assert code == 0, err
        statuses = {r["status"] for r in report_of(report)["recipients"]}
        assert statuses == {"skipped"}
    assert sum(server.rcpts.values()) == JOB_SIZE
    # The whole job is not a shard: it has a journal entry of its own.
    assert (state / "job.shard-1-of-3.lock").exists()
    assert not (state / "job.lock").exists()


def test_three_shards_at_once_each_recipient_once_then_merged(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = "550 5.1.1 No such user"
    server = smtp_server(script=Script(rcpt_replies={"user8@example.com": [refused]}))
    job = make_job(tmp_path, server.port, recipients=recipients(JOB_SIZE))
    state = tmp_path / "state"
    reports = [tmp_path / f"shard{k}.json" for k in (1, 2, 3)]
    processes = [
        spawn(job, "--shard", f"{k}/3", "--state-dir", state, "--report", reports[k - 1], "-q")
        for k in (1, 2, 3)
    ]
    results = [finish(p) for p in processes]
    # user8 is recipient 8: shard 2 of 3, whose exit code says a recipient failed.
    assert [code for code, _, _ in results] == [0, 1, 0], results
    rcpts_once(server)
    assert len(server.messages) == JOB_SIZE - 1

    for k in (1, 3):  # the shards that finished send nothing when run again
        code, _, err = finish(spawn(job, "--shard", f"{k}/3", "--state-dir", state, "-q"))
        assert code == 0, err
    assert sum(server.rcpts.values()) == JOB_SIZE

    merged, junit, failed = tmp_path / "merged.json", tmp_path / "junit.xml", tmp_path / "f.csv"
    code, out, err = cli(
        capsys, "merge", *reports, "--report", merged, "--junit", junit, "--failed-csv", failed
    )
    assert code == 1, err  # as run's: a recipient failed permanently
    data = report_of(merged)
    assert data["summary"]["total"] == JOB_SIZE
    assert data["summary"]["sent"] == JOB_SIZE - 1
    assert data["summary"]["failed"] == 1
    assert data["job_total"] == JOB_SIZE
    assert "shard" not in data
    assert [r["email"] for r in data["recipients"]] == [
        f"user{i}@example.com" for i in range(1, JOB_SIZE + 1)
    ]
    assert "40 recipients: 39 sent, 1 failed" in out
    xml = junit.read_text(encoding="utf-8")
    assert xml.count("<testcase ") == JOB_SIZE
    assert 'tests="40" failures="1"' in xml
    assert xml.count("<failure ") == 1
    assert '<testcase classname="job" name="user8@example.com"><failure type="550"' in xml
    rows = failed.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "email,name,team,reason"
    assert rows[1:] == ["user8@example.com,User 8,core,failed: 550 5.1.1 No such user"]


def test_shards_on_one_machine_do_not_block_each_other(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """A shard holds its own lock: two shards of one job send at the same time."""
    arrivals: dict[str, float] = {}
    server = smtp_server(
        script=Script(after_accept=lambda m: arrivals.setdefault(m.rcpt_tos[0], time.monotonic()))
    )
    job = make_job(tmp_path, server.port, recipients=recipients(8), rate={"per_second": 2})
    state = tmp_path / "state"
    one = spawn(job, "--shard", "1/2", "--state-dir", state, "-q")
    two = spawn(job, "--shard", "2/2", "--state-dir", state, "-q")
    assert finish(one)[0] == 0
    assert finish(two)[0] == 0
    rcpts = sorted(f"user{i}@example.com" for i in range(1, 9))
    assert sorted(server.rcpts) == sorted(arrivals) == rcpts
    # At 1 a second each, a shard sends for 3 seconds, more than a loaded machine takes to start
    # the other: the two sent at the same time.
    odd = [t for r, t in arrivals.items() if int(r[4:].split("@")[0]) % 2]
    even = [t for r, t in arrivals.items() if not int(r[4:].split("@")[0]) % 2]
    assert min(odd) < max(even)
    assert min(even) < max(odd)
    assert {p.name for p in state.glob("*.lock")} == {
        "job.shard-1-of-2.lock",
        "job.shard-2-of-2.lock",
    }


@pytest.mark.parametrize("shard", ["0/3", "4/3", "a/b", "1/0", "3", "1/3/5", "-1/3"])
def test_a_shard_that_is_not_one_is_exit_2(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    shard: str,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    code, _out, err = cli(capsys, "run", job, f"--shard={shard}")
    assert code == 2
    assert err.startswith("--shard: ")
    assert err.count("\n") == 1
    assert f"'{shard}'" in err
    assert server.connections == 0
    assert not (tmp_path / ".batchmail").exists()


def dry_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, dict[str, Any] | None]:
    job = make_job(tmp_path, recipients=recipients(10))
    report = tmp_path / "out" / "report.json"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out", *args)
    return code, err, report_of(report) if report.exists() else None


def test_shard_auto_from_gitlab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    monkeypatch.setenv("CI_NODE_TOTAL", "3")
    code, err, report = dry_shard(tmp_path, capsys, "--shard", "auto")
    assert code == 0, err
    assert report is not None
    assert report["shard"] == {"index": 2, "count": 3}
    assert [r["seq"] for r in report["recipients"]] == [2, 5, 8]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.eml")) == [
        "000002-user2@example.com.eml",
        "000005-user5@example.com.eml",
        "000008-user8@example.com.eml",
    ]


def test_shard_auto_from_a_kubernetes_indexed_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")  # counts from 0: shard 1
    code, err, report = dry_shard(tmp_path, capsys, "--shard", "auto", "--shard-count", "4")
    assert code == 0, err
    assert report is not None
    assert report["shard"] == {"index": 1, "count": 4}
    assert [r["seq"] for r in report["recipients"]] == [1, 5, 9]


@pytest.mark.parametrize(
    ("variables", "args", "said"),
    [
        ({}, [], "none of CI_NODE_INDEX/CI_NODE_TOTAL (GitLab parallel:) or JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "1"}, [], "JOB_COMPLETION_INDEX is set: give the job's"),
        ({"CI_NODE_INDEX": "2"}, [], "CI_NODE_TOTAL='' is not a whole number"),
        ({"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"}, [], "CI_NODE_INDEX=4 of CI_NODE_TOTAL=3"),
        ({"CI_NODE_INDEX": "x", "CI_NODE_TOTAL": "3"}, [], "CI_NODE_INDEX='x'"),
        ({"JOB_COMPLETION_INDEX": "3"}, ["--shard-count", "3"], "JOB_COMPLETION_INDEX=3 of"),
        (
            {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3"},
            ["--shard-count", "2"],
            "CI_NODE_TOTAL=3 but --shard-count says 2",
        ),
        (
            {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2", "JOB_COMPLETION_INDEX": "1"},
            ["--shard-count", "2"],
            "CI_NODE_INDEX/CI_NODE_TOTAL and JOB_COMPLETION_INDEX name different shards",
        ),
    ],
)
def test_shard_auto_without_a_clear_shard_is_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    args: list[str],
    said: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, err, report = dry_shard(tmp_path, capsys, "--shard", "auto", *args)
    assert code == 2
    assert err.startswith("--shard auto: ")
    assert err.count("\n") == 1
    assert said in err
    assert report is None


def test_shard_count_goes_with_auto_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = dry_shard(tmp_path, capsys, "--shard", "1/3", "--shard-count", "3")
    assert code == 2
    assert err == "--shard-count: goes with --shard auto, not with --shard K/N\n"


@pytest.mark.parametrize("shard", ["1/3", "2/3"])
@pytest.mark.parametrize("bad", ["address", "template"])
def test_a_bad_row_anywhere_stops_every_shard_before_anything_is_sent(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    shard: str,
    bad: str,
) -> None:
    """Recipient 40 is shard 1/3's; shard 2/3 never sends it, and still refuses to start."""
    server = smtp_server()
    rows = recipients(JOB_SIZE)
    if bad == "address":
        rows[-1]["email"] = "user40@"
    else:
        del rows[-1]["name"]  # the templates use it
    job = make_job(tmp_path, server.port, recipients=rows, rate={"connections": 2})
    report = tmp_path / "report.json"
    code, _, err = cli(capsys, "run", job, "--shard", shard, "--report", report)
    assert code == 2
    assert "recipient 40" in err or "recipients[39]" in err, err
    assert server.connections == 0
    assert report_of(report)["status"] == "invalid"
    assert report_of(report)["shard"]["index"] == int(shard[0])


def test_a_shard_paces_itself_at_its_share_of_every_rate(tmp_path: Path) -> None:
    job = load_job(
        make_job(
            tmp_path,
            rate={
                "per_second": 20,
                "per_minute": 300,
                "per_hour": 1000,
                "per_day": 10_000,
                "batch_size": 90,
                "batch_pause": 30,
                "connections": 4,
            },
        )
    )
    paced = Shard(1, 2).paced(job).rate
    assert paced.windows() == [(10, 1.0), (150, 60.0), (500, 3600.0), (5000, 86400.0)]
    assert (paced.batch_size, paced.batch_pause, paced.connections) == (45, 30, 4)
    # A share below one message a second stays a rate: 1 a second over 3 shards, one each 3 s.
    slow = Shard(3, 3).paced(load_job(make_job(tmp_path, rate={"per_second": 1}))).rate
    assert slow.windows() == [(1, 3.0)]


def test_shard_1_of_2_of_a_job_at_20_a_second_sends_at_10_a_second(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    arrivals: list[float] = []
    lock = threading.Lock()

    def arrived(_: Received) -> None:
        with lock:
            arrivals.append(time.monotonic())

    server = smtp_server(script=Script(after_accept=arrived))
    job = make_job(tmp_path, server.port, recipients=recipients(60), rate={"per_second": 20})
    code, out, err = cli(capsys, "run", job, "--shard", "1/2", "--report", tmp_path / "r.json")
    assert code == 0, err
    assert "shard 1/2: rate limits divided by 2" in out
    assert len(arrivals) == 30
    # The limiter lets 10 go in any second; what arrives may be late by a few milliseconds, so
    # a window of 0.9 s is counted: the whole job's 20 a second would put 20 in one.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 0.9) for start in arrivals)
    gaps = [arrivals[i + 10] - arrivals[i] for i in range(len(arrivals) - 10)]
    print(
        f"shard 1/2 of per_second 20: {len(arrivals)} messages in "
        f"{arrivals[-1] - arrivals[0]:.2f} s; at most {busiest} arrived within any 0.9 s; "
        f"the 11th after any message arrived {min(gaps):.3f} s later at the least"
    )
    assert busiest == 10
    assert min(gaps) >= 0.9
    assert collections.Counter(server.rcpts.values()) == {1: 30}
