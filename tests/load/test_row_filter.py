"""`where:` over the rows of the recipients: what it rejects is not mailed, `validate` counts
it, and an expression that cannot be evaluated names the row. Sent to the test SMTP server."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import SmtpServerFactory
from support import cli, make_job, parse, report_of, run_cli
from tables import write_csv, write_xlsx

PEOPLE = [
    ["email", "name", "team", "plan", "amount"],
    ["ann@example.org", "Ann", "core", "pro", "120"],
    ["bob@example.org", "Bob", "docs", "basic", "30"],
    ["cy@example.org", "Cy", "core", "pro", "80"],
    ["di@example.org", "Di", "infra", "free", "0"],
    ["ed@example.org", "Ed", "docs", "pro", "250"],
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def job(folder: Path, port: int, where: str, data: str = "people.csv") -> Path:
    return make_job(
        folder,
        port,
        recipients=None,
        attachments=None,
        recipients_file=data,
        where=where,
        subject="Your {{ plan }} plan, {{ name }}",
        template={"html": None},
    )


def test_where_mails_exactly_the_rows_it_keeps(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    write_csv(tmp_path / "people.csv", PEOPLE)
    path = job(tmp_path, server.port, "plan == 'pro'")
    result = run_cli(capsys, "run", path, "--report", tmp_path / "report.json")
    assert result.code == 0, result.err
    pro = [[row[0]] for row in PEOPLE[1:] if row[3] == "pro"]
    assert [m.rcpt_tos for m in server.messages] == pro
    assert [parse(m.data)["Subject"] for m in server.messages] == [
        "Your pro plan, Ann",
        "Your pro plan, Cy",
        "Your pro plan, Ed",
    ]
    report = report_of(tmp_path / "report.json")
    assert [r["email"] for r in report["recipients"]] == [p[0] for p in pro]


def test_validate_says_how_many_rows_were_filtered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "people.csv", PEOPLE)
    job(tmp_path, 25, "plan == 'pro' and amount | int > 100")
    code, out, err = cli(capsys, "validate", tmp_path / "job.yaml")
    assert (code, err) == (0, "")
    assert out.endswith(": valid: 2 messages (3 rows filtered out by where)\n")


def test_where_reads_workbook_rows_and_job_vars(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    table = [PEOPLE[0]] + [[*row[:4], int(row[4])] for row in PEOPLE[1:]]
    write_xlsx(tmp_path / "people.xlsx", {"People": table})
    path = job(tmp_path, server.port, "amount | int >= threshold", data="people.xlsx")
    text = path.read_text(encoding="utf-8") + "vars:\n  threshold: 120\n"
    path.write_text(text, encoding="utf-8")
    result = run_cli(capsys, "run", path, "--report", tmp_path / "report.json")
    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [["ann@example.org"], ["ed@example.org"]]


def test_an_expression_that_fails_on_a_row_names_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*PEOPLE, ["fay@example.org", "Fay", "core", "pro", "a lot"]]
    write_csv(tmp_path / "people.csv", rows)
    path = job(tmp_path, 25, "amount | float > 100 and region == 'EU'")
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("where"))
    code, out, err = cli(capsys, "validate", path)
    assert (code, out) == (2, "")
    # Jinja2's `float` filter turns "a lot" into 0.0: only rows over 100 reach `region`.
    assert err.splitlines() == [
        f"people.csv:2: where: 'region' is undefined (the expression at job.yaml:{line})",
        f"people.csv:6: where: 'region' is undefined (the expression at job.yaml:{line})",
    ]


def test_a_syntax_error_in_where_names_the_job_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "people.csv", PEOPLE)
    path = job(tmp_path, 25, "plan == 'pro' and")
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("where"))
    code, _, err = cli(capsys, "validate", path)
    assert code == 2
    assert err.startswith(f"job.yaml:{line}: where: syntax error: ")
    assert err.count("\n") == 1


def test_where_runs_in_the_templates_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "people.csv", PEOPLE)
    path = job(tmp_path, 25, "plan.__class__.__mro__[1].__subclasses__()")
    code, _, err = cli(capsys, "validate", path)
    assert code == 2
    assert "people.csv:2: where: access to attribute '__class__' of 'str' object is unsafe" in err
