"""Recipients: inline and from data files, checked and de-duplicated, never 'repaired'.

Each test runs the command line in-process and looks at what the user sees: stderr, the exit
code, and the `.eml` files of a dry run (parsed back with the standard library).
"""

from __future__ import annotations

import json
import re
import warnings
from email import policy
from email.message import EmailMessage
from email.parser import Parser
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from support import cli, dry_run, eml_count, line_of, write_job_file

from batchmail.load.addresses import AddressError, check_address

# The text body shows every variable the tests care about, one per line; `default` keeps
# rows without a name or team renderable (an undefined variable is an error otherwise).
BODY = "email={{ email }}\nname={{ name|default('') }}\nteam={{ team|default('') }}\n"

HEAD = """\
version: 1
from: "Bot <bot@example.com>"
subject: "For {{ name|default('nobody') }}"
template:
  text: templates/body.txt.j2
"""
SMTP = """\
smtp:
  host: 127.0.0.1
  security: none
"""


# --- helpers -------------------------------------------------------------------------------


def write_job(
    root: Path,
    *,
    inline: str = "",
    data_file: str | None = None,
    files: dict[str, str | bytes] | None = None,
    extra: str = "",
    body: str = BODY,
) -> tuple[Path, str]:
    """Write job.yaml (+ templates/data) under `root`; return its path and text.

    `inline` is the YAML of the `recipients:` list items, `data_file` the recipients_file.
    """
    text = HEAD
    if inline:
        text += "recipients:\n" + inline
    if data_file is not None:
        text += f"recipients_file: {data_file}\n"
    text += extra + SMTP
    return write_job_file(root, text, {"templates/body.txt.j2": body, **(files or {})}), text


def messages(root: Path) -> list[EmailMessage]:
    """The dry run's messages, in recipient order (the files are numbered).

    Parsed from text: an address with a non-ASCII local part travels as raw UTF-8 (RFC 6532).
    """
    parser = Parser(policy=policy.default)
    found = []
    for path in sorted((root / "out").glob("*.eml")):
        message = parser.parsestr(path.read_bytes().decode("utf-8"))
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


def body_vars(message: EmailMessage) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text_of(message).splitlines())


def to_of(message: EmailMessage) -> tuple[str, str]:
    [address] = message["to"].addresses
    return address.display_name, address.addr_spec


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# --- reading data files --------------------------------------------------------------------

CSV_ROWS = (
    "email,name,team\r\n"
    "alice@example.com,Alice,core\r\n"
    "bob@example.org,Bob Müller,docs\r\n"
    'chloé@example.org,"Durand, Chloé",infra\r\n'
)
EXPECTED = [
    {"email": "alice@example.com", "name": "Alice", "team": "core"},
    {"email": "bob@example.org", "name": "Bob Müller", "team": "docs"},
    {"email": "chloé@example.org", "name": "Durand, Chloé", "team": "infra"},
]


@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
def test_csv_with_or_without_bom_and_non_ascii_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bom: bool
) -> None:
    data = ("\ufeff" if bom else "") + CSV_ROWS
    write_job(tmp_path, data_file="data/people.csv", files={"data/people.csv": data})
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert "3 previewed" in out
    found = messages(tmp_path)
    assert [body_vars(m) for m in found] == EXPECTED
    assert [to_of(m) for m in found] == [(r["name"], r["email"]) for r in EXPECTED]
    assert [m["subject"] for m in found] == [f"For {r['name']}" for r in EXPECTED]


def test_csv_in_another_encoding_is_an_error_not_mojibake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = CSV_ROWS.encode("latin-1", errors="replace")
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err == (
        "people.csv:3: byte 0xFC at offset 68 is not UTF-8: the file looks like cp1252, "
        "set recipients_file's `encoding: cp1252`\n"
    )
    assert eml_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "people.json",
            json.dumps(
                [
                    {"email": "alice@example.com", "name": "Alice", "team": "core"},
                    {"email": "bob@example.org", "name": "Bob Müller", "team": 7},
                ],
                ensure_ascii=False,
            ),
        ),
        (
            "people.jsonl",
            '{"email": "alice@example.com", "name": "Alice", "team": "core"}\n'
            "\n"
            '{"email": "bob@example.org", "name": "Bob M\\u00fcller", "team": 7}\n',
        ),
        (
            "people.yaml",
            "- email: alice@example.com\n  name: Alice\n  team: core\n"
            "- email: bob@example.org\n  name: Bob Müller\n  team: 7\n",
        ),
    ],
    ids=["json", "jsonl", "yaml"],
)
def test_json_jsonl_and_yaml_data_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str
) -> None:
    write_job(tmp_path, data_file=name, files={name: content})
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert "2 previewed" in out
    found = messages(tmp_path)
    assert [body_vars(m) for m in found] == [
        {"email": "alice@example.com", "name": "Alice", "team": "core"},
        {"email": "bob@example.org", "name": "Bob Müller", "team": "7"},
    ]
    assert to_of(found[1]) == ("Bob Müller", "bob@example.org")


def test_json_data_file_read_without_deprecation_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps([{"email": "alice@example.com", "name": "Alice"}])
    write_job(tmp_path, data_file="people.json", files={"people.json": data})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        code, out, err = cli(capsys, "validate", "job.yaml")
    assert (code, out, err) == (0, "job.yaml: valid: 1 messages\n", "")


def test_inline_and_file_recipients_combine_inline_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = (
        "  - email: zed@example.com\n    name: Zed\n    team: inline\n"
        "  - email: yves@example.com\n    name: Yves\n    team: inline\n"
    )
    write_job(
        tmp_path,
        inline=inline,
        data_file="people.csv",
        files={"people.csv": "email,name,team\nalice@example.com,Alice,file\n"},
    )
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert "3 previewed" in out
    names = sorted(p.name for p in (tmp_path / "out").glob("*.eml"))
    assert names == [
        "000001-zed@example.com.eml",
        "000002-yves@example.com.eml",
        "000003-alice@example.com.eml",
    ]
    assert [body_vars(m)["team"] for m in messages(tmp_path)] == ["inline", "inline", "file"]
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert [r["email"] for r in report["recipients"]] == [
        "zed@example.com",
        "yves@example.com",
        "alice@example.com",
    ]


def test_extra_fields_become_template_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "{{ greeting }} {{ name }}, {{ tests_failed }} failed in {{ team }}.\n"
    write_job(
        tmp_path,
        data_file="people.csv",
        body=body,
        files={
            "people.csv": "email,name,team,tests_failed,greeting\n"
            "alice@example.com,Alice,core,2,Hi\n"
            "bob@example.org,Bob,docs,0,Hello\n"
        },
    )
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    texts = [text_of(m) for m in messages(tmp_path)]
    assert texts == ["Hi Alice, 2 failed in core.\n", "Hello Bob, 0 failed in docs.\n"]


def test_name_is_optional(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_job(tmp_path, inline="  - email: alice@example.com\n", body="Hi {{ email }}\n")
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    [message] = messages(tmp_path)
    assert to_of(message) == ("", "alice@example.com")
    assert text_of(message) == "Hi alice@example.com\n"


def test_blank_lines_in_csv_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = "email,name,team\n\nalice@example.com,Alice,core\n\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert "1 previewed" in out


def test_missing_data_file_names_the_job_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write_job(tmp_path, data_file="nope.csv")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == (
        f"job.yaml:{line_of(text, 'recipients_file')}: recipients_file: "
        "recipients file not found: nope.csv\n"
    )


def test_data_file_of_an_unknown_kind_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write_job(tmp_path, data_file="people.txt", files={"people.txt": "x"})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith(f"job.yaml:{line_of(text, 'recipients_file')}: recipients_file: ")


# --- invalid addresses: refused, never repaired --------------------------------------------


@pytest.mark.parametrize(
    "value",
    [" alice@example.com", "alice@example.com ", "bob@", "bob", "a b@example.com", "@example.com"],
)
def test_invalid_address_in_csv_is_an_error_naming_row_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    data = f"email,name\nok@example.com,Ok\n{value},Someone\ncarol@example.com,Carol\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err.splitlines() == [err.splitlines()[0]]
    assert err.startswith(f"people.csv:3: email: {value!r} is not a valid address")
    assert eml_count(tmp_path) == 0  # nothing written, not even for the good rows


def test_every_invalid_row_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = "email,name\nbob@,Bob\nok@example.com,Ok\ncarol@@example.com,Carol\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("people.csv:2: email: 'bob@' is not a valid address")
    assert lines[1].startswith("people.csv:4: email: 'carol@@example.com' is not a valid address")


def test_invalid_address_in_json_names_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps([{"email": "ok@example.com"}, {"email": "bob@"}])
    write_job(tmp_path, data_file="people.json", files={"people.json": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.json: item 2: email: 'bob@' is not a valid address")


def test_invalid_address_in_jsonl_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = '{"email": "ok@example.com"}\n\n{"email": 42}\n'
    write_job(tmp_path, data_file="people.jsonl", files={"people.jsonl": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "people.jsonl:3: email: 42 is not an address\n"


def test_invalid_inline_address_names_the_job_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = "  - email: ok@example.com\n    name: Ok\n  - email: bob@\n    name: Bob\n"
    _, text = write_job(tmp_path, inline=inline)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith(f"job.yaml:{line_of(text, 'bob@')}: ")
    assert "email: 'bob@' is not a valid address" in err


def test_invalid_inline_address_names_the_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = "  - email: ok@example.com\n    name: Ok\n  - email: bob@\n    name: Bob\n"
    _, text = write_job(tmp_path, inline=inline)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith(
        f"job.yaml:{line_of(text, 'bob@')}: recipients[1].email: 'bob@' is not a valid address"
    )


# --- malformed data files ------------------------------------------------------------------


def test_csv_without_email_column_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "mail,name\nalice@example.com,Alice\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "people.csv:1: the header row has no 'email' column\n"


def test_csv_email_column_in_other_case_gets_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "Email,name\nalice@example.com,Alice\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == (
        "people.csv:1: the header row has no 'email' column "
        "(the header must name it exactly 'email')\n"
    )


@pytest.mark.parametrize(
    ("row", "count"), [("carol@example.com,Carol,extra", 3), ("carol@example.com", 1)]
)
def test_csv_row_with_wrong_number_of_fields_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, count: int
) -> None:
    data = f"email,name\nalice@example.com,Alice\n\n{row}\n"
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err == f"people.csv:4: this row has {count} fields, the header 2\n"
    assert eml_count(tmp_path) == 0


def test_json_that_is_not_a_list_of_objects_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps([{"email": "ok@example.com"}, "bob@example.org"])
    write_job(tmp_path, data_file="people.json", files={"people.json": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "people.json: item 2: each recipient is an object with an 'email' field\n"


def test_broken_json_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = '[{"email": "ok@example.com"}, {"email": '
    write_job(tmp_path, data_file="people.json", files={"people.json": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.json: invalid JSON")


def test_broken_jsonl_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = '{"email": "ok@example.com"}\n{"email": "bob@example.org"\n'
    write_job(tmp_path, data_file="people.jsonl", files={"people.jsonl": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.jsonl:2: invalid JSON: ")


def test_yaml_data_item_without_email_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "- email: ok@example.com\n- name: Nobody\n  team: x\n"
    write_job(tmp_path, data_file="people.yaml", files={"people.yaml": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "people.yaml:2: each recipient is an object with an 'email' field\n"


# --- duplicates ------------------------------------------------------------------------------


DUPLICATES = (
    "email,name,team\n"
    "alice@example.com,Alice,first\n"
    "bob@example.org,Bob,b\n"
    "Alice@Example.com,Alice Again,second\n"
    "ALICE@EXAMPLE.COM,Alice Thrice,third\n"
)
DUPLICATE_WARNING = (
    "warning: people.csv:2: alice@example.com appears 3 times "
    "(people.csv:2, people.csv:4, people.csv:5): it gets one message"
)


def test_duplicate_addresses_get_one_message_and_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, data_file="people.csv", files={"people.csv": DUPLICATES})
    code, out, err = dry_run(capsys)
    assert code == 0
    assert "2 previewed" in out
    assert err  # warned ...
    assert set(err.splitlines()) == {DUPLICATE_WARNING}  # ... with the rows involved
    found = messages(tmp_path)
    assert [to_of(m) for m in found] == [
        ("Alice", "alice@example.com"),  # the first row wins
        ("Bob", "bob@example.org"),
    ]
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["summary"]["total"] == 2
    assert [r["email"] for r in report["recipients"]] == ["alice@example.com", "bob@example.org"]


def test_validate_warns_about_duplicates_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, data_file="people.csv", files={"people.csv": DUPLICATES})
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 0
    assert out == "job.yaml: valid: 2 messages\n"
    assert err == DUPLICATE_WARNING + "\n"


def test_run_warns_about_duplicates_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, data_file="people.csv", files={"people.csv": DUPLICATES})
    code, _, err = dry_run(capsys)
    assert code == 0
    assert err == DUPLICATE_WARNING + "\n"


def test_duplicate_across_inline_and_file_is_warned_with_both_places(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write_job(
        tmp_path,
        inline="  - email: Bob@Example.org\n    name: Bob\n    team: inline\n",
        data_file="people.csv",
        files={"people.csv": "email,name,team\nbob@example.org,Bobby,file\n"},
    )
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 0
    assert out == "job.yaml: valid: 1 messages\n"
    line = line_of(text, "Bob@Example.org")
    assert err == (
        f"warning: job.yaml:{line}: bob@example.org appears 2 times "
        f"(job.yaml:{line}, people.csv:2): it gets one message\n"
    )


# --- no recipients -----------------------------------------------------------------------------


def test_no_recipients_at_all_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path)
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err == "job.yaml: the job has no recipients\n"


def test_data_file_with_only_a_header_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write_job(tmp_path, data_file="people.csv", files={"people.csv": "email,name\n"})
    for command in (["validate", "job.yaml"], ["run", "job.yaml", "--dry-run", "--out", "out"]):
        code, _, err = cli(capsys, *command)
        assert code == 2
        assert err == f"job.yaml:{line_of(text, 'recipients_file')}: the job has no recipients\n"
    assert eml_count(tmp_path) == 0


def test_empty_inline_list_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_job(tmp_path, extra="recipients: []\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "job.yaml: the job has no recipients\n"


# --- header injection through recipient data --------------------------------------------------

EVIL = "Bob\r\nBcc: evil@example.org"


def test_line_break_in_csv_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f'email,name\r\nalice@example.com,Alice\r\nbob@example.org,"{EVIL}"\r\n'
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("people.csv:")
    assert line.endswith(f": name: {EVIL!r} contains a line break (recipient bob@example.org)")
    assert eml_count(tmp_path) == 0
    assert "Bcc" not in "".join(p.name for p in tmp_path.rglob("*"))


def test_line_break_in_csv_name_names_the_line_the_row_starts_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f'email,name\r\nalice@example.com,Alice\r\nbob@example.org,"{EVIL}"\r\n'
    write_job(tmp_path, data_file="people.csv", files={"people.csv": data})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("people.csv:3: name: ")


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x00", "\u2028", "\x85"])
def test_any_line_break_in_a_jsonl_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], brk: str
) -> None:
    name = f"Bob{brk}Bcc: evil@example.org"
    data = json.dumps({"email": "ok@example.com"}) + "\n"
    data += json.dumps({"email": "bob@example.org", "name": name}) + "\n"
    write_job(tmp_path, data_file="people.jsonl", files={"people.jsonl": data})
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err == (
        f"people.jsonl:2: name: {name!r} contains a line break (recipient bob@example.org)\n"
    )
    assert eml_count(tmp_path) == 0


def test_line_break_in_an_inline_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = '  - email: bob@example.org\n    name: "Bob\\r\\nBcc: evil@example.org"\n'
    _, text = write_job(tmp_path, inline=inline)
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err == (
        f"job.yaml:{line_of(text, 'bob@example.org')}: recipients[0].name: {EVIL!r} "
        "contains a line break "
        "(recipient bob@example.org)\n"
    )
    assert eml_count(tmp_path) == 0


def test_line_break_in_an_address_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps({"email": "bob@example.org\r\nBcc: evil@example.org"}) + "\n"
    write_job(tmp_path, data_file="people.jsonl", files={"people.jsonl": data}, body="Hi\n")
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err.startswith("people.jsonl:1: email: ")
    assert "contains a line break" in err
    assert eml_count(tmp_path) == 0


def test_name_that_is_not_text_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps({"email": "bob@example.org", "name": ["Bob", "Smith"]}) + "\n"
    write_job(tmp_path, data_file="people.jsonl", files={"people.jsonl": data}, body="Hi\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == (
        "people.jsonl:1: name: ['Bob', 'Smith'] is not text (recipient bob@example.org)\n"
    )


TRICKY_ADDRESSES = [
    "user@example.com",
    "a.b+tag@sub.example.org",
    "o'brien@example.ie",
    "x@münchen.de",
    "x@xn--mnchen-3ya.de",
    "jörg@example.com",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    '"quoted local"@example.com',
    "a@localhost",
    "a@example",
    "a@-bad.example.com",
    "a@exa_mple.com",
    "a@[192.0.2.1]",
    "a@example.com.",
    "a@example.test",
    "a@",
    "@example.com",
    "no-at-sign",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 58 + ".com",
    "postmaster@example.com",
]


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_an_address_is_accepted_exactly_when_email_validator_accepts_it(address: str) -> None:
    """The per-domain cache in front of email_validator changes no verdict and no A-label."""
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        for _ in range(2):  # the second time from the cache
            with pytest.raises(AddressError, match=re.escape(repr(address))):
                check_address(address)
        return
    expected = f"{address.rpartition('@')[0]}@{checked.ascii_domain}"
    assert [check_address(address) for _ in range(2)] == [expected, expected]
