"""`batchmail merge`: the shards' reports made into the job's, or refused naming the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from smtpserver import Script, SmtpServerFactory
from support import cli, make_job, recipients, report_of

SIZE = 10


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BATCHMAIL_STATE_DIR", "CI_NODE_INDEX", "CI_NODE_TOTAL", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)


def dry_shards(
    root: Path, capsys: pytest.CaptureFixture[str], count: int = 3, **settings: Any
) -> list[Path]:
    """The reports of a dry run of each of `count` shards of a job of SIZE recipients."""
    job = make_job(root / "job", recipients=recipients(SIZE), **settings)
    reports = []
    for k in range(1, count + 1):
        out = root / f"shard{k}of{count}"
        code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out, "--shard", f"{k}/{count}")
        assert code == 0, err
        reports.append(out / "report.json")
    return reports


def edit(path: Path, change: Any) -> Path:
    data = report_of(path)
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def merge(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    return cli(capsys, "merge", *args)


def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *reports: Path) -> str:
    """The one line `merge` refuses the reports with; nothing was written."""
    out = tmp_path / "merged.json"
    code, _, err = merge(capsys, *reports, "--report", out)
    assert code == 2
    assert err.count("\n") == 1, err
    assert not out.exists()
    return err


def test_dry_run_shards_merge_into_the_jobs_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = dry_shards(tmp_path, capsys)
    out, junit, failed = tmp_path / "m.json", tmp_path / "m.xml", tmp_path / "m.csv"
    # Given in any order.
    code, text, err = merge(
        capsys, *reversed(reports), "--report", out, "--junit", junit, "--failed-csv", failed
    )
    assert code == 0, err
    data = report_of(out)
    assert data["summary"]["total"] == data["summary"]["previewed"] == SIZE
    assert data["job_total"] == SIZE
    assert data["dry_run"] is True
    assert data["status"] == "completed"
    assert "shard" not in data
    assert "digest" not in data
    emails = [r["email"] for r in data["recipients"]]
    assert emails == [f"user{i}@example.com" for i in range(1, SIZE + 1)]
    assert all(set(r) >= {"status", "message_id", "attachments"} for r in data["recipients"])
    assert not any("seq" in r or "fields" in r for r in data["recipients"])
    assert "job: 10 recipients: 10 previewed" in text
    assert junit.read_text(encoding="utf-8").count("<testcase ") == SIZE
    assert failed.read_text(encoding="utf-8").splitlines() == ["email,reason"]


def test_a_shard_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, _ = dry_shards(tmp_path, capsys)
    err = refused(capsys, tmp_path, one, two)
    assert err.startswith("merge: shard 3/3 missing: the reports given are ")
    assert f"{one} (1/3)" in err
    assert f"{two} (2/3)" in err


def test_a_shard_given_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    copy = tmp_path / "copy.json"
    copy.write_bytes(two.read_bytes())
    err = refused(capsys, tmp_path, one, two, three, copy)
    assert err == f"{copy}: shard 2/3 given twice: {two} too\n"


def test_reports_of_different_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(three, lambda data: data.update(job="another"))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"merge: {one} and {three} are reports of different jobs (job, another)\n"


def test_reports_of_different_shard_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, _ = dry_shards(tmp_path, capsys)
    _, half = dry_shards(tmp_path / "halves", capsys, count=2)
    err = refused(capsys, tmp_path, one, two, half)
    assert err.startswith(f"merge: {one} and {half} split the job differently")
    assert "(shard 1/3, shard 2/2)" in err


def test_reports_of_different_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, _ = dry_shards(tmp_path, capsys)
    # The same job, but its text changed before shard 3 ran.
    (tmp_path / "job" / "templates" / "body.txt.j2").write_text("Changed, {{ name }}.\n")
    job = tmp_path / "job" / "job.yaml"
    out = tmp_path / "late"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out, "--shard", "3/3")
    assert code == 0, err
    err = refused(capsys, tmp_path, one, two, out / "report.json")
    assert err.startswith(f"merge: {one} and {out / 'report.json'} were run with different inputs")


def test_a_dry_run_and_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(three, lambda data: data.update(dry_run=False))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"merge: {one} and {three}: one is a dry run, the other is not\n"


def test_a_recipient_in_no_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(two, lambda data: data["recipients"].pop(1))  # recipient 5
    err = refused(capsys, tmp_path, one, two, three)
    assert err == (
        f"merge: recipient 5 is in no report (10 in the job; {two}, shard 2/3, should hold "
        "recipient 5)\n"
    )


def test_the_last_recipients_in_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(one, lambda data: data["recipients"].pop())  # recipient 10, the job's last
    err = refused(capsys, tmp_path, one, two, three)
    assert err.startswith(f"merge: recipient 10 is in no report (10 in the job; {one}, shard 1/3")


def test_a_recipient_in_two_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    stray = report_of(two)["recipients"][0]  # recipient 2
    edit(one, lambda data: data["recipients"].insert(1, stray))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"merge: recipient 2 (user2@example.com) is in {one} and in {two}\n"


def test_a_recipient_twice_in_one_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(three, lambda data: data["recipients"].append(data["recipients"][-1]))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"merge: recipient 9 (user9@example.com) is twice in {three}\n"


def test_a_recipient_beyond_the_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    extra = {**report_of(two)["recipients"][-1], "seq": 11, "email": "user11@example.com"}
    edit(two, lambda data: data["recipients"].append(extra))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"{two}: recipient 11 is beyond the job's 10\n"


def test_a_recipient_in_another_shards_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    moved = report_of(two)["recipients"][0]  # recipient 2, shard 2's
    edit(two, lambda data: data["recipients"].pop(0))
    edit(one, lambda data: data["recipients"].insert(1, moved))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"{one}: recipient 2 (user2@example.com) is not shard 1/3's\n"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"{not json", "not JSON: "),
        (b"", "not JSON: "),
        (b'["a list"]', "not a batchmail report: Expected `object`, got `array`"),
        (b'{"job": "job"}', "not a batchmail report: Object missing required field"),
        (b"\xff\xfe", "not JSON: "),
    ],
)
def test_a_file_that_is_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, said: str
) -> None:
    one, two, _ = dry_shards(tmp_path, capsys)
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    err = refused(capsys, tmp_path, one, two, bad)
    assert err.startswith(f"{bad}: {said}")


def test_a_report_with_a_broken_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(three, lambda data: data["recipients"][0].update(seq="three"))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == (f"{three}: not a batchmail report: Expected `int`, got `str` - at `$[0].seq`\n")


def test_a_report_of_the_whole_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, _three = dry_shards(tmp_path, capsys)
    whole = tmp_path / "whole"
    code, _, err = cli(capsys, "run", tmp_path / "job" / "job.yaml", "--dry-run", "--out", whole)
    assert code == 0, err
    err = refused(capsys, tmp_path, one, two, whole / "report.json")
    assert err == f"{whole / 'report.json'}: a report of the whole job, not of a shard " + (
        "(run --shard K/N)\n"
    )


def test_the_report_of_an_invalid_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, three = dry_shards(tmp_path, capsys)
    edit(three, lambda data: data.update(status="invalid", recipients=[]))
    err = refused(capsys, tmp_path, one, two, three)
    assert err == f"{three}: the job was invalid in this run: nothing was sent to merge\n"


def test_a_report_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two, _ = dry_shards(tmp_path, capsys)
    err = refused(capsys, tmp_path, one, two, tmp_path / "absent.json")
    assert err == f"{tmp_path / 'absent.json'}: cannot read the report: No such file or directory\n"


def test_merged_exit_code_follows_the_summary(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recipient deferred in one shard: the merged run is unfinished, exit 75, as run's."""
    server = smtp_server(script=Script(rcpt_replies={"user3@example.com": ["451 4.3.0 Later"]}))
    job = make_job(tmp_path, server.port, recipients=recipients(6), retry={"max_attempts": 1})
    reports = []
    for k in (1, 2):
        report = tmp_path / f"r{k}.json"
        code, _, _ = cli(capsys, "run", job, "--shard", f"{k}/2", "--report", report)
        assert code == (75 if k == 1 else 0)
        reports.append(report)
    failed = tmp_path / "failed.csv"
    code, out, _ = merge(capsys, *reports, "--report", tmp_path / "m.json", "--failed-csv", failed)
    assert code == 75
    assert report_of(tmp_path / "m.json")["status"] == "incomplete"
    assert "6 recipients: 5 sent, 1 deferred" in out
    assert failed.read_text(encoding="utf-8").splitlines() == [
        "email,name,team,reason",
        "user3@example.com,User 3,core,deferred: 451 4.3.0 Later",
    ]


def test_merged_outputs_are_those_of_one_run_of_the_whole_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Content warnings too: each message's, and the job's own, as a run of the job says them."""
    html = '<p>Hello {{ name }}</p>{% if name == "User 4" %}<img src="cid:x">{% endif %}\n'
    job = make_job(tmp_path / "job", recipients=recipients(SIZE))
    (tmp_path / "job" / "templates" / "body.html.j2").write_text(html, encoding="utf-8")
    whole = tmp_path / "whole"
    code, _, err = cli(
        capsys, "run", job, "--dry-run", "--out", whole, "--junit", tmp_path / "whole.xml"
    )
    assert code == 0, err
    reports = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}"
        code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out, "--shard", f"{k}/3")
        assert code == 0, err
        reports.append(out / "report.json")
    merged, junit = tmp_path / "merged.json", tmp_path / "merged.xml"
    code, _, err = merge(capsys, *reports, "--report", merged, "--junit", junit)
    assert code == 0, err

    assert junit.read_text(encoding="utf-8") == (tmp_path / "whole.xml").read_text(encoding="utf-8")
    assert "warning: img-without-alt: " in junit.read_text(encoding="utf-8")
    one, together = report_of(whole / "report.json"), report_of(merged)
    assert together["warnings"] == one["warnings"]
    assert together["warnings"]["by_code"] == {"img-without-alt": 1}
    assert together["summary"] == one["summary"]
    for mine, theirs in zip(together["recipients"], one["recipients"], strict=True):
        assert mine.pop("message_id") != theirs.pop("message_id")  # of other runs
        assert mine == theirs
