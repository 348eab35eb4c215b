"""`group_by: FIELD`: one message per distinct value, with the first row's fields and `rows`,
every row of the group in file order. Sent to the test SMTP server."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtpserver import SmtpServerFactory
from support import PDF, cli, make_job, parse, run_cli, write_files
from tables import write_csv, write_xlsx

from batchmail.errors import Problem
from batchmail.load.grouping import grouped
from batchmail.load.rows import Row
from batchmail.load.settings import Grouping

INVOICES = [
    ["email", "name", "invoice", "amount"],
    ["ann@example.org", "Ann", "INV-1", "120.00"],
    ["bob@example.org", "Bob", "INV-2", "30.50"],
    ["Ann@EXAMPLE.org", "Ann L.", "INV-3", "80.00"],  # the same person: case aside, as dedup
    ["cy@example.org", "Cy", "INV-4", "12.00"],
    ["bob@example.org", "Bob", "INV-5", "7.25"],
    ["ann@example.org", "Ann", "INV-6", "250.00"],
]
LISTING = (
    "Dear {{ name }}, your invoices:\n"
    "{% for row in rows %}{{ row.invoice }} {{ row.amount }}\n{% endfor %}"
    "{{ rows | length }} in all\n"
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def job(folder: Path, port: int, data: str = "invoices.csv", **settings: object) -> Path:
    write_files(folder, {"templates/body.txt.j2": LISTING})
    defaults: dict[str, object] = {"attachments": None, "group_by": "email"}
    path = make_job(
        folder,
        port,
        recipients=None,
        recipients_file=data,
        subject="{{ rows | length }} invoices for {{ name }}",
        template={"html": None},
        **{**defaults, **settings},
    )
    write_files(folder, {"templates/body.txt.j2": LISTING})  # make_job writes its own
    return path


def body(data: bytes) -> str:
    part = parse(data).get_body(("plain",))
    assert part is not None
    text: str = part.get_content()
    return text.replace("\r\n", "\n")


@pytest.mark.parametrize("connections", [1, 2])
def test_six_rows_of_three_people_send_three_messages_listing_their_rows(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    connections: int,
) -> None:
    server = smtp_server()
    write_csv(tmp_path / "invoices.csv", INVOICES)
    path = job(tmp_path, server.port, rate={"connections": connections})
    result = run_cli(capsys, "run", path, "--report", tmp_path / "r.json")
    assert result.code == 0, result.err
    server.messages.sort(key=lambda m: m.rcpt_tos)  # several connections: in any order
    assert [m.rcpt_tos for m in server.messages] == [
        ["ann@example.org"],
        ["bob@example.org"],
        ["cy@example.org"],
    ]
    texts = [body(m.data) for m in server.messages]
    assert texts == [
        "Dear Ann, your invoices:\nINV-1 120.00\nINV-3 80.00\nINV-6 250.00\n3 in all\n",
        "Dear Bob, your invoices:\nINV-2 30.50\nINV-5 7.25\n2 in all\n",
        "Dear Cy, your invoices:\nINV-4 12.00\n1 in all\n",
    ]
    assert parse(server.messages[0].data)["Subject"] == "3 invoices for Ann"
    assert "warning" not in result.err  # a group is one recipient, not a repeated address


def test_a_workbook_grouped_with_where_and_attachments_named_from_rows(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    table = [INVOICES[0]] + [[*row[:3], float(row[3])] for row in INVOICES[1:]]
    write_xlsx(tmp_path / "invoices.xlsx", {"Invoices": table})
    write_files(tmp_path, {"files/INV-1+INV-6.pdf": PDF, "files/INV-2+INV-5.pdf": PDF})
    path = job(
        tmp_path,
        server.port,
        data="invoices.xlsx",
        where="amount | float >= 100 or name == 'Bob'",
        attachments=[{"path": "files/{{ rows | map(attribute='invoice') | join('+') }}.pdf"}],
    )
    code, out, err = cli(capsys, "validate", path)
    assert (code, err) == (0, "")
    assert out.endswith("valid: 2 messages (2 rows filtered out by where)\n")
    result = run_cli(capsys, "run", path, "--report", tmp_path / "r.json")
    assert result.code == 0, result.err
    assert [body(m.data) for m in server.messages] == [
        "Dear Ann, your invoices:\nINV-1 120\nINV-6 250\n2 in all\n",
        "Dear Bob, your invoices:\nINV-2 30.5\nINV-5 7.25\n2 in all\n",
    ]
    names = [[p.get_filename() for p in parse(m.data).iter_attachments()] for m in server.messages]
    assert names == [["INV-1+INV-6.pdf"], ["INV-2+INV-5.pdf"]]


def test_grouping_by_a_field_that_is_not_an_address(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    table = [
        ["account", "email", "name", "invoice", "amount"],
        ["A-7", "ops@example.org", "Ops", "INV-1", "1"],
        ["B-2", "bob@example.org", "Bob", "INV-2", "2"],
        ["A-7", "ops@example.org", "Ops", "INV-3", "3"],
    ]
    write_csv(tmp_path / "invoices.csv", table)
    path = job(tmp_path, server.port, group_by="account")
    result = run_cli(capsys, "run", path, "--report", tmp_path / "r.json")
    assert result.code == 0, result.err
    assert [body(m.data).splitlines()[1:3] for m in server.messages] == [
        ["INV-1 1", "INV-3 3"],
        ["INV-2 2", "1 in all"],
    ]


def test_a_row_without_the_field_names_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = [
        ["email", "name", "invoice", "amount", "account"],
        ["a@example.org", "A", "I", "1", ""],
    ]
    write_csv(tmp_path / "invoices.csv", table)
    code, out, err = cli(capsys, "validate", job(tmp_path, 25, group_by="account"))
    assert (code, out) == (2, "")
    assert err == "invoices.csv:2: group_by: this row has no 'account' to group by\n"


# --- any rows ---------------------------------------------------------------------------------

PEOPLE = ["ann@example.org", "bob@example.org", "zoë@bücher.example", "ops@example.org"]


def spelled(address: str, upper: bool, ace: bool) -> str:
    """The same address as people write it: in another case, an IDN domain in A-labels."""
    local, _, domain = address.partition("@")
    if ace:
        domain = domain.encode("idna").decode("ascii")
    text = f"{local}@{domain}"
    return text.upper() if upper else text


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(range(len(PEOPLE))), st.booleans(), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_grouping_keeps_every_row_in_file_order_under_its_person(
    picks: list[tuple[int, bool, bool]],
) -> None:
    rows = [
        Row({"email": spelled(PEOPLE[who], upper, ace), "n": n}, f"f.csv:{n}")
        for n, (who, upper, ace) in enumerate(picks)
    ]
    problems: list[Problem] = []
    found = list(grouped(rows, Grouping("email", "job.yaml:3"), problems))
    assert problems == []
    order = list(dict.fromkeys(who for who, _, _ in picks))  # first appearances
    assert [[r["n"] for r in group.fields["rows"]] for group in found] == [
        [n for n, (who, _, _) in enumerate(picks) if who == person] for person in order
    ]
    for group in found:
        first = group.fields["rows"][0]
        assert group.fields["email"] == first["email"]
        assert group.origin == f"f.csv:{first['n']}"
