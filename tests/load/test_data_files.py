"""Recipient data as people keep it: CSVs in other encodings and with other delimiters, TSVs,
and .xlsx workbooks, read into the same rows. Each test runs the command line in-process on
files written by the libraries people's tools use, and looks at what the user sees."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import REPO, cli, dry_run, write_job_file
from tables import (
    with_cached_value,
    with_shared_strings,
    without_used_range,
    write_csv,
    write_xlsx,
)

from batchmail.cli import main

TEXT = "name={{ name }}\nplan={{ plan }}\namount={{ amount }}\nsince={{ since }}\nnote={{ note }}\n"

HEADER = ["email", "name", "plan", "amount", "since", "note"]
PEOPLE = [
    ["zoe@example.org", "Zoë Ångström", "pro", 42, dt.date(2024, 3, 1), "café, crème"],
    ["francois@example.org", "François Dupont", "basic", 1234.5, dt.date(2023, 12, 24), ""],
    ["jurgen@example.de", "Jürgen Müller", "pro", 7, dt.date(2022, 1, 31), 'says "hi"'],
    ["ana@example.es", "Ana Núñez", "basic", 0.25, dt.date(2021, 6, 5), "50 € \u2013 due"],
    ["soren@example.dk", "Søren Kierkegaard", "pro", 100, dt.date(2020, 2, 29), "Øresund"],
]


def as_text(table: list[list[object]]) -> list[list[str]]:
    """The table as a person sees it in a spreadsheet, cell by cell."""
    return [[v.isoformat() if isinstance(v, dt.date) else str(v) for v in row] for row in table]


def job(
    root: Path,
    recipients_file: str,
    *,
    extra: str = "",
    body: str = TEXT,
    subject: str = "For {{ email }}",
) -> Path:
    text = (
        "version: 1\n"
        'from: "Shop <shop@example.com>"\n'
        f'subject: "{subject}"\n'
        "template:\n  text: body.txt.j2\n"
        f"recipients_file: {recipients_file}\n"
        f"{extra}"
        "smtp:\n  host: 127.0.0.1\n  security: none\n"
    )
    return write_job_file(root, text, {"body.txt.j2": body})


def emls(root: Path) -> list[bytes]:
    """The dry run's messages without their Date and Message-ID (they change with each run)."""
    changing = re.compile(rb"^(Date|Message-ID): .*\r\n", re.MULTILINE)
    return [changing.sub(b"", path.read_bytes()) for path in sorted((root / "out").glob("*.eml"))]


def parsed(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def text_of(data: bytes) -> str:
    body = parsed(data).get_body(("plain",))
    assert body is not None
    content: str = body.get_content()
    return content.replace("\r\n", "\n")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# --- the acceptance: one list, four formats, the same messages -------------------------------


def test_the_same_people_in_four_formats_give_byte_identical_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = [HEADER, *PEOPLE]
    variants = {
        "utf8": ("people.csv", lambda p: write_csv(p, as_text(table))),
        "cp1252": (
            "{path: people.csv, encoding: cp1252}",
            lambda p: write_csv(p, as_text(table), encoding="cp1252", delimiter=";"),
        ),
        "utf16": (
            "people.tsv",
            lambda p: write_csv(
                p.with_suffix(".tsv"), as_text(table), encoding="utf-16", delimiter="\t"
            ),
        ),
        "xlsx": ("people.xlsx", lambda p: write_xlsx(p.with_suffix(".xlsx"), {"People": table})),
    }
    found = {}
    for name, (key, write) in variants.items():
        folder = tmp_path / name
        write(folder / "people.csv")
        job(folder, key, subject="Your {{ plan }} plan, {{ name }}")
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            code, out, err = dry_run(capsys)
        assert (code, err) == (0, ""), name
        assert "5 previewed" in out
        found[name] = emls(folder)
    assert (folder / "people.xlsx").exists()
    assert found["cp1252"] == found["utf8"]
    assert found["utf16"] == found["utf8"]
    assert found["xlsx"] == found["utf8"]
    assert text_of(found["xlsx"][1]) == (
        "name=François Dupont\nplan=basic\namount=1234.5\nsince=2023-12-24\nnote=\n"
    )
    assert parsed(found["xlsx"][0])["To"] == "Zoë Ångström <zoe@example.org>"


def test_a_cp1252_file_without_its_encoding_is_one_line_naming_line_byte_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(
        tmp_path / "people.csv", as_text([HEADER, *PEOPLE]), encoding="cp1252", delimiter=";"
    )
    job(tmp_path, "people.csv")
    code, out, err = cli(capsys, "validate", "job.yaml")
    offset = path.read_bytes().index("ë".encode("cp1252"))
    assert (code, out) == (2, "")
    assert err == (
        f"people.csv:2: byte 0xEB at offset {offset} is not UTF-8: the file looks like cp1252, "
        "set recipients_file's `encoding: cp1252`\n"
    )


def test_a_bad_byte_deep_in_a_large_file_is_located_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["email", "name"]] + [[f"user{i}@example.com", f"User {i}"] for i in range(5_000)]
    path = write_csv(tmp_path / "people.csv", rows)
    data = path.read_bytes()
    offset = data.index(b"User 3500\r\n") + 4
    path.write_bytes(data[:offset] + b"\xff" + data[offset + 1 :])
    job(tmp_path, "people.csv", body="{{ name }}\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith(f"people.csv:3502: byte 0xFF at offset {offset} is not UTF-8")
    assert err.count("\n") == 1


def test_a_file_invalid_in_the_encoding_it_names_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "people.csv").write_bytes(b"email,name\r\nan@example.org,A\x81B\r\n")
    job(tmp_path, "{path: people.csv, encoding: cp1252}", body="{{ name }}\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.csv:2: byte 0x81 at offset 28 is not cp1252")


def test_a_jsonl_file_not_in_utf8_is_located_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = '{"email": "a@example.org", "name": "Ann"}\n{"email": "b@example.org", "name": "Zoë"}\n'
    (tmp_path / "people.jsonl").write_bytes(lines.encode("cp1252"))
    job(tmp_path, "people.jsonl", body="{{ name }}\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    offset = lines.encode("cp1252").index(b"\xeb")
    assert code == 2
    assert err.startswith(f"people.jsonl:2: byte 0xEB at offset {offset} is not UTF-8")
    assert err.endswith("(this kind of file is read as UTF-8)\n")
    assert "encoding:" not in err  # the key is for .csv and .tsv files


def test_an_unknown_encoding_and_options_for_another_kind_of_file_are_job_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "people.csv", [["email"], ["a@example.org"]])
    job(tmp_path, "{path: people.csv, encoding: klingon}")
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "job.yaml:6: recipients_file.encoding: unknown encoding 'klingon'\n"
    )
    job(tmp_path, "{path: people.csv, sheet: March}")
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "job.yaml:6: recipients_file.sheet: sheet is for an .xlsx workbook, not .csv\n"
    )


# --- delimiters and exports --------------------------------------------------------------


@pytest.mark.parametrize(
    "delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"]
)
def test_the_delimiter_is_sniffed_from_the_header_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], delimiter: str
) -> None:
    # Values hold the other delimiters: only the header row decides.
    table = [["email", "name", "note"], ["a@example.org", "Smith, Ann", "a;b|c\td"]]
    write_csv(tmp_path / "people.csv", table, delimiter=delimiter)
    job(tmp_path, "people.csv", body="{{ name }}/{{ note }}\n")
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert text_of(emls(tmp_path)[0]) == "Smith, Ann/a;b|c\td\n"


def test_a_given_delimiter_wins_over_the_sniffed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Split by commas, the header has two fields too: the tie goes to the comma.
    (tmp_path / "people.csv").write_text("email;name, title\r\na@example.org;Ann, PhD\r\n")
    job(tmp_path, "people.csv", body="{{ email }}\n")
    assert cli(capsys, "validate", "job.yaml")[0] == 2
    job(tmp_path, "{path: people.csv, delimiter: ';'}", body="{{ email }}\n")
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert text_of(emls(tmp_path)[0]) == "a@example.org\n"


def test_a_wrong_delimiter_says_which_one_was_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "people.csv", [["email", "name"], ["a@example.org", "Ann"]], delimiter=";")
    job(tmp_path, "{path: people.csv, delimiter: ','}")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert (code, err) == (
        2,
        "people.csv:1: the header row has no 'email' column (read with the delimiter ',': "
        "set recipients_file's `delimiter`)\n",
    )


def test_a_libreoffice_export_with_quoted_fields_and_crlf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LibreOffice's "Text CSV": every text cell quoted, quotes doubled, CRLF line ends, a cell
    # with a line break kept in its quotes.
    table = [
        ["email", "name", "note"],
        ["a@example.org", "Ann", 'She said "yes"'],
        ["b@example.org", "Bob", "two\r\nlines"],
    ]
    path = write_csv(tmp_path / "people.csv", table, quoting=csv.QUOTE_ALL)
    assert path.read_bytes().startswith(
        b'"email","name","note"\r\n"a@example.org","Ann","She said ""yes"""\r\n'
    )
    job(tmp_path, "people.csv", body="{{ note }}|\n")
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert [text_of(m) for m in emls(tmp_path)] == ['She said "yes"|\n', "two\nlines|\n"]


def test_a_tsv_in_utf8_with_bom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(
        tmp_path / "people.tsv",
        [["email", "name"], ["a@example.org", "Ann, Jr."]],
        encoding="utf-8-sig",
        delimiter="\t",
    )
    job(tmp_path, "people.tsv", body="{{ name }}\n")
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert text_of(emls(tmp_path)[0]) == "Ann, Jr.\n"


# --- workbooks ------------------------------------------------------------------------------


def march_workbook(path: Path) -> Path:
    intro = [["This workbook lists the March invoices."], ["See the next sheet."]]
    march = [
        ["email", "name", "amount", "due", "sent_at", "paid", "twice", "note"],
        [
            "a@example.org",
            "Ann",
            42,
            dt.date(2024, 3, 1),
            dt.datetime(2024, 3, 1, 14, 30),
            True,
            "=C2*2",
            None,
        ],
        ["b@example.org", "Bob", 42.0, dt.datetime(2024, 3, 2), None, False, "=C3*2", "late"],
        [None, None, None, None, None, None, None, None],  # an empty row: skipped
        ["c@example.org", None, 0.1, None, None, None, None, "no name"],
    ]
    write_xlsx(path, {"Intro": intro, "March": march})
    with_cached_value(path, "G2", "84")
    return with_cached_value(path, "G3", "84")


FIELDS = "{{ name }}|{{ amount }}|{{ due }}|{{ sent_at }}|{{ paid }}|{{ twice }}|{{ note }}\n"


@pytest.mark.parametrize("form", ["inline-strings", "shared-strings", "no-used-range"])
def test_a_workbook_sheet_reads_as_a_person_sees_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    path = march_workbook(tmp_path / "people.xlsx")
    if form == "shared-strings":
        with_shared_strings(path)
    if form == "no-used-range":
        assert b"<dimension " in zipfile.ZipFile(path).read("xl/worksheets/sheet2.xml")
        without_used_range(path)
    job(tmp_path, "{path: people.xlsx, sheet: March}", body=FIELDS)
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert [text_of(m) for m in emls(tmp_path)] == [
        "Ann|42|2024-03-01|2024-03-01 14:30:00|TRUE|84|\n",
        "Bob|42|2024-03-02||FALSE|84|late\n",
        "|0.1|||||no name\n",
    ]


def test_the_first_sheet_is_read_unless_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    march_workbook(tmp_path / "people.xlsx")
    job(tmp_path, "people.xlsx", body=FIELDS)
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "people.xlsx:Intro!A1: the header row has no 'email' column\n"
    )
    job(tmp_path, "{path: people.xlsx, sheet: April}", body=FIELDS)
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "people.xlsx: no sheet 'April' in this workbook (its sheets: 'Intro', 'March')\n"
    )


def test_workbook_errors_name_the_sheet_and_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["name", "email"]] + [[f"P{i}", f"p{i}@example.org"] for i in range(2, 7)]
    rows.append(["Broken", "not an address"])
    write_xlsx(tmp_path / "people.xlsx", {"Sheet 1": [["x"]], "March 2024": rows})
    job(tmp_path, "{path: people.xlsx, sheet: March 2024}", body="{{ name }}\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.xlsx:'March 2024'!B7: email: ")
    rows[-1] = ["Extra", "e@example.org", "stray"]
    write_xlsx(tmp_path / "people.xlsx", {"March": rows})
    job(tmp_path, "people.xlsx", body="{{ name }}\n")
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "people.xlsx:March!C7: 'stray' is in a column without a header\n"
    )


def test_a_table_below_a_title_counts_the_sheets_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["Invoices, March"], [], ["name", "email"], ["Ann", "ann@example.org"], ["B", "b@"]]
    write_xlsx(tmp_path / "people.xlsx", {"March": rows})
    job(tmp_path, "people.xlsx", body="{{ name }}\n")
    assert cli(capsys, "validate", "job.yaml")[2] == (
        "people.xlsx:March!A1: the header row has no 'email' column\n"
    )
    del rows[:2]
    write_xlsx(tmp_path / "people.xlsx", {"March": [[], [], *rows]})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.xlsx:March!B5: email: ")


def test_a_file_that_is_not_a_workbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "people.xlsx").write_text("email\na@example.org\n")
    job(tmp_path, "people.xlsx")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.xlsx: not an .xlsx workbook")


def test_a_damaged_workbook_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_xlsx(tmp_path / "people.xlsx", {"People": [["email"], ["a@example.org"]]})
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"][:-40]  # cut short
    with zipfile.ZipFile(path, "w") as target:
        for name, data in parts.items():
            target.writestr(name, data)
    job(tmp_path, "people.xlsx")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.xlsx: cannot read this workbook (ParseError: ")
    assert err.count("\n") == 1


def test_openpyxl_and_charset_normalizer_load_only_when_needed(tmp_path: Path) -> None:
    write_csv(tmp_path / "people.csv", [["email", "name"], ["a@example.org", "Ann"]])
    job(tmp_path, "people.csv", body="{{ name }}\n")
    probe = (
        "import sys; from batchmail.cli import main; code = main(['validate', 'job.yaml']); "
        "print(code, 'openpyxl' in sys.modules, 'charset_normalizer' in sys.modules)"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.splitlines()[-1] == "0 False False"


# --- any value, any format -------------------------------------------------------------------

WRITERS = {
    "csv": lambda folder, table: write_csv(folder / "people.csv", table),
    "csv-cp1252": lambda folder, table: write_csv(
        folder / "people.csv", table, encoding="cp1252", delimiter=";"
    ),
    "tsv-utf16": lambda folder, table: write_csv(
        folder / "people.tsv", table, encoding="utf-16", delimiter="\t"
    ),
    "xlsx": lambda folder, table: write_xlsx(folder / "people.xlsx", {"People": table}),
    "xlsx-shared": lambda folder, table: with_shared_strings(
        write_xlsx(folder / "people.xlsx", {"People": table})
    ),
}
KEYS = {
    "csv": "people.csv",
    "csv-cp1252": "{path: people.csv, encoding: cp1252}",
    "tsv-utf16": "people.tsv",
    "xlsx": "people.xlsx",
    "xlsx-shared": "people.xlsx",
}
# Text a cell can hold in every format: no control characters (a workbook's XML cannot carry
# them), no line separators (the text part's line ends are CRLF), and no `_xHHHH_` (a
# workbook's escape for them) nor a leading `=` (a formula).
CELL_TEXT = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="_"),
    max_size=40,
).filter(lambda text: not text.startswith("="))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(WRITERS)), notes=st.lists(CELL_TEXT, min_size=1, max_size=3))
def test_a_rows_values_arrive_unchanged_whatever_the_format(kind: str, notes: list[str]) -> None:
    if kind == "csv-cp1252":
        assume(all(_encodable(note, "cp1252") for note in notes))
    table = [["email", "note"]] + [[f"p{i}@example.org", note] for i, note in enumerate(notes)]
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        root = Path(folder)
        patch.chdir(root)
        WRITERS[kind](root, table)
        job(root, KEYS[kind], body="[{{ note }}]\n")
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["run", "job.yaml", "--dry-run", "--out", "out"])
        assert (code, err.getvalue()) == (0, "")
        assert [text_of(m) for m in emls(root)] == [f"[{note}]\n" for note in notes]


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True
