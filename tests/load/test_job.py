"""Loading job files: schema errors with file:line and field path, env interpolation, defaults.

Every test looks at what a user sees: the lines on stderr, the exit code, the loaded values.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from support import cli, line_of, write_job_file

from batchmail.errors import InvalidJobError
from batchmail.load.job import load_job
from batchmail.load.settings import Job

REPO = Path(__file__).resolve().parents[2]

BODY = "Hello {{ name }}\n"

# A minimal valid job; `security: none` so that it needs no TLS settings.
VALID = """\
version: 1
from: "Bot <bot@example.com>"
subject: "Hello {{ name }}"
template:
  text: templates/body.txt.j2
recipients:
  - email: alice@example.com
    name: Alice
smtp:
  host: 127.0.0.1
  security: none
"""


# --- helpers -------------------------------------------------------------------------------


def write_job(
    root: Path,
    text: str,
    files: dict[str, str | bytes] | None = None,
    name: str = "job.yaml",
) -> Path:
    """Write a job directory: the job file plus templates and data files (paths relative)."""
    return write_job_file(root, text, {"templates/body.txt.j2": BODY, **(files or {})}, name)


def error_lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert "Traceback" not in err
    return lines


def load_problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidJobError) as info:
        load_job(path, environ={} if environ is None else environ)
    return info.value.lines()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path, so that paths in messages are shown relative to it (`job.yaml:3`)."""
    monkeypatch.chdir(tmp_path)


# --- a valid job and its defaults ----------------------------------------------------------


def test_valid_job_loads_with_its_values_and_defaults(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID, name="weekly-report.yaml")
    job = load_job(path, environ={})
    assert isinstance(job, Job)
    assert job.name == "weekly-report"  # the file name without extension
    assert job.base_dir == tmp_path.resolve()  # the job file's folder
    assert job.sender.address == "bot@example.com"
    assert job.sender.name == "Bot"
    assert job.reply_to is None
    assert job.subject == "Hello {{ name }}"
    assert job.text is not None
    assert job.text.name == "templates/body.txt.j2"
    assert job.html is None
    assert [dict(r.fields) for r in job.recipients] == [
        {"email": "alice@example.com", "name": "Alice"}
    ]
    assert job.smtp.host == "127.0.0.1"
    assert job.smtp.port == 25
    assert job.smtp.security == "none"
    assert job.smtp.timeout == 30.0
    assert job.smtp.username_env is None
    assert job.rate.connections == 1
    assert job.rate.windows() == []
    assert job.max_recipients is None


def test_valid_job_passes_validate_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, VALID)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert (code, err) == (0, "")
    assert out == "job.yaml: valid: 1 messages\n"


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_default_port_follows_security(tmp_path: Path, security: str, port: int) -> None:
    path = write_job(tmp_path, VALID.replace("security: none", f"security: {security}"))
    job = load_job(path, environ={})
    assert (job.smtp.security, job.smtp.port) == (security, port)


def test_security_defaults_to_starttls_on_587(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID.replace("  security: none\n", ""))
    job = load_job(path, environ={})
    assert (job.smtp.security, job.smtp.port) == ("starttls", 587)


def test_explicit_port_wins_over_the_default(tmp_path: Path) -> None:
    path = write_job(tmp_path, VALID.replace("security: none", "security: tls\n  port: 2465"))
    assert load_job(path, environ={}).smtp.port == 2465


def test_name_in_the_file_wins_over_the_file_stem(tmp_path: Path) -> None:
    path = write_job(tmp_path, "name: nightly\n" + VALID, name="other.yaml")
    assert load_job(path, environ={}).name == "nightly"


def test_base_dir_is_relative_to_the_job_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    text = VALID.replace("version: 1\n", "version: 1\nbase_dir: ..\n") + (
        "recipients_file: data/people.csv\n"
    )
    path = write_job(
        project,
        text,
        files={"data/people.csv": "email,name\nbob@example.org,Bob\n"},
        name="jobs/mail.yaml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    job = load_job(path, environ={})
    assert job.base_dir == project.resolve()
    assert job.recipients_file == project.resolve() / "data/people.csv"

    # The templates and the data file are found from there, whatever the working directory.
    code, out, err = cli(capsys, "validate", path)
    assert (code, err) == (0, "")
    assert out.endswith("valid: 2 messages\n")


# --- schema errors -------------------------------------------------------------------------


def test_unknown_key_names_its_line_and_the_key_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace("  security: none\n", "  prot: 25\n  security: none\n")
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert out == ""
    line = line_of(text, "prot:")
    assert line == 11
    assert error_lines(err) == [f"job.yaml:{line}: smtp.prot: unknown key (did you mean 'port'?)"]


def test_unknown_key_with_a_block_value_points_at_the_key_line(tmp_path: Path) -> None:
    text = VALID + "rat:\n\n  per_second: 5\n"
    path = write_job(tmp_path, text)
    line = line_of(text, "rat:")
    assert load_problems(path) == [f"job.yaml:{line}: rat: unknown key (did you mean 'rate'?)"]


def test_unknown_key_without_a_close_match_suggests_nothing(tmp_path: Path) -> None:
    text = VALID + "colour: red\n"
    path = write_job(tmp_path, text)
    assert load_problems(path) == [f"job.yaml:{line_of(text, 'colour')}: colour: unknown key"]


def test_unknown_key_in_an_attachment_object(tmp_path: Path) -> None:
    text = VALID + "attachments:\n  - path: a.pdf\n    requird: false\n"
    path = write_job(tmp_path, text)
    line = line_of(text, "requird")
    assert load_problems(path) == [
        f"job.yaml:{line}: attachments[0].requird: unknown key (did you mean 'required'?)"
    ]


@pytest.mark.parametrize("value", ["abc", '"587"', "70000", "0"])
def test_wrong_port_names_smtp_port_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    text = VALID.replace("  security: none\n", f"  port: {value}\n  security: none\n")
    write_job(tmp_path, text)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    [message] = error_lines(err)
    assert message.startswith(f"job.yaml:{line_of(text, 'port:')}: smtp.port: ")


def test_port_given_as_text_says_what_type_was_expected(tmp_path: Path) -> None:
    text = VALID.replace("  security: none\n", "  port: abc\n  security: none\n")
    path = write_job(tmp_path, text)
    assert load_problems(path) == [
        f"job.yaml:{line_of(text, 'port:')}: smtp.port: 'abc' is not of type 'integer'"
    ]


def test_enum_typo_suggests_the_value_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace("security: none", "security: startls")
    write_job(tmp_path, text)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert error_lines(err) == [
        f"job.yaml:{line_of(text, 'security')}: smtp.security: 'startls' is not one of "
        "starttls, tls, none (did you mean 'starttls'?)"
    ]


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    text = VALID.replace('subject: "Hello {{ name }}"\n', "")
    path = write_job(tmp_path, text)
    [problem] = load_problems(path)
    assert problem.startswith("job.yaml:1: ")
    assert "'subject' is a required property" in problem


def test_every_schema_error_is_reported_in_one_run_sorted_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHMAIL_TEST_UNSET", raising=False)
    # Mistakes in an order unlike the schema's, so that sorting is visible.
    text = """\
colour: red
version: 2
from: "Bot <bot@example.com>"
subject: "Hi"
template:
  txt: templates/body.txt.j2
smtp:
  host: 127.0.0.1
  port: abc
  security: startls
rate:
  per_second: -1
vars:
  where: "${BATCHMAIL_TEST_UNSET}"
"""
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 7, err
    numbers = [int(re.match(r"job\.yaml:(\d+): ", line)[1]) for line in lines]  # type: ignore[index]
    assert numbers == [1, 2, 6, 9, 10, 12, 14]
    assert lines[0] == "job.yaml:1: colour: unknown key"
    assert lines[1].startswith("job.yaml:2: version: ")
    assert lines[2] == "job.yaml:6: template.txt: unknown key (did you mean 'text'?)"
    assert lines[3] == "job.yaml:9: smtp.port: 'abc' is not of type 'integer'"
    assert lines[4].startswith("job.yaml:10: smtp.security: 'startls' is not one of")
    assert lines[5].startswith("job.yaml:12: rate.per_second: -1 ")
    assert lines[6].startswith("job.yaml:14: vars.where: environment variable BATCHMAIL_TEST_UNSET")


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ('"../../outside"', "'../../outside'"),
        ('"reports/nightly"', "'reports/nightly'"),
        ('"a\\\\b"', "'a\\\\b'"),
        ("|\n  nightly\n", "'nightly\\n'"),  # a block scalar keeps its line break
    ],
)
def test_a_job_name_that_would_leave_the_state_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, shown: str
) -> None:
    # The name becomes file names in the state directory: JOB.lock, JOB.report.json.
    write_job(tmp_path / "project", VALID.replace("version: 1\n", f"version: 1\nname: {written}\n"))
    code, out, err = cli(
        capsys, "run", "project/job.yaml", "--state-dir", tmp_path / "project" / "state"
    )
    assert (code, out) == (2, "")
    assert error_lines(err) == [
        f"project/job.yaml:2: name: {shown} does not fit: Job name (default: the job file's "
        "name without extension). It names the job's lock and report files, so it has no /, "
        "\\ or control characters."
    ]
    # Nothing written anywhere: neither the lock nor a report, in the state directory or out.
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "body.txt.j2",
        "job.yaml",
        "project",
        "templates",
    ]


def test_a_pattern_mismatch_says_what_the_field_takes(tmp_path: Path) -> None:
    text = VALID.replace("recipients:\n  - email: alice@example.com\n    name: Alice\n", "")
    path = write_job(tmp_path, text + "recipients_file: people.txt\n")
    assert load_problems(path) == [
        "job.yaml:9: recipients_file: 'people.txt' does not fit: A .csv or .tsv (header row "
        "with an email column), .xlsx, .json, .jsonl or .yaml file."
    ]


def test_a_job_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write_job(tmp_path, "- just\n- a list\n")
    [problem] = load_problems(path)
    assert problem.startswith("job.yaml:1: a job file is a mapping")


def test_a_missing_job_file_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "validate", "nope.yaml")
    assert code == 2
    [message] = error_lines(err)
    assert message.startswith("nope.yaml: cannot read the job file: ")


# --- YAML ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "needle"),
    [
        ("  host: 127.0.0.1\n   port: 25\n", "port: 25"),  # bad indentation
        ("  host: [127.0.0.1\n", None),  # unclosed flow sequence: reported where it ends
        ('  host: "127.0.0.1\n', None),  # unterminated quote
    ],
)
def test_yaml_syntax_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str, needle: str | None
) -> None:
    text = VALID.replace("  host: 127.0.0.1\n", broken)
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert out == ""
    [message] = error_lines(err)
    match = re.fullmatch(r"job\.yaml:(\d+): YAML syntax error: .+", message)
    assert match, message
    if needle is not None:
        assert int(match[1]) == line_of(text, needle)
    else:
        assert line_of(text, "host:") <= int(match[1]) <= len(text.splitlines()) + 1


def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        VALID.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  host: 127.0.0.2\n")
        + 'subject: "Second"\n'
    )
    write_job(tmp_path, text)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    first_host, second_host = line_of(text, "host:"), line_of(text, "host:", 2)
    first_subject, second_subject = line_of(text, "subject:"), line_of(text, "subject:", 2)
    assert error_lines(err) == [
        f"job.yaml:{second_host}: smtp: duplicate key 'host' (first at line {first_host})",
        f"job.yaml:{second_subject}: duplicate key 'subject' (first at line {first_subject})",
    ]


def test_python_tag_on_a_scalar_is_refused(tmp_path: Path) -> None:
    text = VALID + "vars:\n  x: !!python/name:os.getcwd ''\n"
    path = write_job(tmp_path, text)
    [problem] = load_problems(path)
    assert problem.startswith(f"job.yaml:{line_of(text, 'x: ')}: YAML syntax error: ")
    assert "python/name:os.getcwd" in problem


def test_python_tag_on_a_sequence_is_refused(tmp_path: Path) -> None:
    text = VALID + "vars:\n  x: !!python/object/apply:os.getcwd []\n"
    path = write_job(tmp_path, text)
    [problem] = load_problems(path)
    assert problem == (
        f"job.yaml:{line_of(text, 'x: ')}: vars.x: unsupported YAML tag "
        "tag:yaml.org,2002:python/object/apply:os.getcwd"
    )


# --- credentials -----------------------------------------------------------------------------


def test_literal_password_is_refused_and_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace(
        "  security: none\n",
        "  security: starttls\n  username_env: SMTP_USERNAME\n  password: hunter2\n",
    )
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert "hunter2" not in out + err
    [message] = error_lines(err)
    assert message.startswith(
        f"job.yaml:{line_of(text, 'password:')}: smtp.password: a literal password is refused"
    )
    assert "password_env" in message


def test_username_env_without_tls_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace(
        "  security: none\n",
        "  security: none\n  username_env: SMTP_USERNAME\n  password_env: SMTP_PASSWORD\n",
    )
    write_job(tmp_path, text)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    [message] = error_lines(err)
    assert message.startswith(
        f"job.yaml:{line_of(text, 'security:')}: smtp.security: AUTH without TLS would send "
        "the password in plaintext"
    )
    assert "allow_insecure_auth" in message


def test_username_env_without_tls_is_allowed_when_asked_for(tmp_path: Path) -> None:
    text = VALID.replace(
        "  security: none\n",
        "  security: none\n  username_env: SMTP_USERNAME\n  password_env: SMTP_PASSWORD\n"
        "  allow_insecure_auth: true\n",
    )
    job = load_job(write_job(tmp_path, text), environ={})
    assert job.smtp.allow_insecure_auth is True
    assert (job.smtp.username_env, job.smtp.password_env) == ("SMTP_USERNAME", "SMTP_PASSWORD")


def test_username_env_needs_password_env(tmp_path: Path) -> None:
    text = VALID.replace(
        "  security: none\n", "  security: starttls\n  username_env: SMTP_USERNAME\n"
    )
    assert load_problems(write_job(tmp_path, text)) == [
        f"job.yaml:{line_of(text, 'smtp:')}: smtp: username_env and password_env go together"
    ]


def test_env_name_must_be_a_variable_name(tmp_path: Path) -> None:
    text = VALID.replace(
        "  security: none\n",
        "  security: starttls\n  username_env: me@example.com\n  password_env: SMTP_PASSWORD\n",
    )
    [problem] = load_problems(write_job(tmp_path, text))
    assert problem.startswith(f"job.yaml:{line_of(text, 'username_env')}: smtp.username_env: ")


# --- environment interpolation ---------------------------------------------------------------


def test_env_interpolation_defaults_and_escape(tmp_path: Path) -> None:
    text = VALID + (
        "vars:\n"
        '  plain: "${BM_A}"\n'
        '  inside: "x-${BM_A}-y"\n'
        '  unset_default: "${BM_UNSET:-fallback}"\n'
        '  set_default: "${BM_A:-fallback}"\n'
        '  empty_default: "${BM_EMPTY:-fallback}"\n'
        '  empty_plain: "${BM_EMPTY}"\n'
        '  empty_given_default: "${BM_UNSET:-}"\n'
        '  price: "costs $$5"\n'
        '  literal: "$${BM_A}"\n'
        '  lone: "a $ sign"\n'
    )
    job = load_job(write_job(tmp_path, text), environ={"BM_A": "alpha", "BM_EMPTY": ""})
    assert job.vars == {
        "plain": "alpha",
        "inside": "x-alpha-y",
        "unset_default": "fallback",
        "set_default": "alpha",
        "empty_default": "fallback",
        "empty_plain": "",
        "empty_given_default": "",
        "price": "costs $5",
        "literal": "${BM_A}",
        "lone": "a $ sign",
    }


def test_env_interpolation_reads_the_process_environment_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BM_SENDER", "Env Bot <env-bot@example.com>")
    write_job(tmp_path, VALID.replace('"Bot <bot@example.com>"', '"${BM_SENDER}"'))
    code, _, err = cli(capsys, "run", "job.yaml", "--dry-run", "--out", "out")
    assert (code, err) == (0, "")
    [eml] = (tmp_path / "out").glob("*.eml")
    assert b"\r\nFrom: Env Bot <env-bot@example.com>\r\n" in b"\r\n" + eml.read_bytes()


UNSET_MESSAGE = (
    "environment variable BM_NOT_SET_HOST is not set (write ${BM_NOT_SET_HOST:-default} "
    "for a default)"
)


def test_unset_variable_without_default_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BM_NOT_SET_HOST", raising=False)
    text = VALID.replace("host: 127.0.0.1", 'host: "${BM_NOT_SET_HOST}"')
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert lines[0] == f"job.yaml:{line_of(text, 'host:')}: smtp.host: {UNSET_MESSAGE}"


def test_unset_variable_gives_one_error_not_a_cascade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BM_NOT_SET_HOST", raising=False)
    text = VALID.replace("host: 127.0.0.1", 'host: "${BM_NOT_SET_HOST}"')
    write_job(tmp_path, text)
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert error_lines(err) == [f"job.yaml:{line_of(text, 'host:')}: smtp.host: {UNSET_MESSAGE}"]


def test_every_unset_variable_is_reported(tmp_path: Path) -> None:
    text = VALID + 'vars:\n  a: "${BM_ONE}"\n  b: "${BM_TWO} and ${BM_THREE}"\n'
    problems = load_problems(write_job(tmp_path, text))
    assert len(problems) == 3
    assert [p.split(": ")[0] for p in problems] == [
        f"job.yaml:{line_of(text, 'a: ')}",
        f"job.yaml:{line_of(text, 'b: ')}",
        f"job.yaml:{line_of(text, 'b: ')}",
    ]
    for name, problem in zip(("BM_ONE", "BM_TWO", "BM_THREE"), problems, strict=True):
        assert f"environment variable {name} is not set" in problem


def test_plain_scalar_variable_is_typed_like_the_value_written_in_place(tmp_path: Path) -> None:
    text = VALID.replace("security: none", "security: none\n  port: ${BM_PORT}") + (
        "vars:\n  as_int: ${BM_PORT}\n  as_text: \"${BM_PORT}\"\n  single: '${BM_PORT}'\n"
    )
    job = load_job(write_job(tmp_path, text), environ={"BM_PORT": "2525"})
    assert job.smtp.port == 2525
    assert type(job.smtp.port) is int
    assert job.vars == {"as_int": 2525, "as_text": "2525", "single": "2525"}
    assert type(job.vars["as_int"]) is int


def test_plain_scalar_default_is_typed_too(tmp_path: Path) -> None:
    text = VALID.replace("security: none", "security: none\n  port: ${BM_PORT:-2526}")
    assert load_job(write_job(tmp_path, text), environ={}).smtp.port == 2526


def test_quoted_port_variable_stays_text_and_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("security: none", 'security: none\n  port: "${BM_PORT}"')
    problems = load_problems(write_job(tmp_path, text), environ={"BM_PORT": "2525"})
    assert problems == [
        f"job.yaml:{line_of(text, 'port:')}: smtp.port: '2525' is not of type 'integer'"
    ]


def test_variable_value_is_not_parsed_as_yaml(tmp_path: Path) -> None:
    text = VALID + "vars:\n  x: ${BM_TRICKY}\n"
    job = load_job(write_job(tmp_path, text), environ={"BM_TRICKY": "a: [b, c] # d"})
    assert job.vars == {"x": "a: [b, c] # d"}


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "bob@",
        "not an address",
        "a@example.com, b@example.com",
        "Bot <bot@example.com> trailing",
        "Bot@@example.com",
    ],
)
def test_invalid_from_is_refused_naming_from_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sender: str
) -> None:
    text = VALID.replace('"Bot <bot@example.com>"', json.dumps(sender))
    write_job(tmp_path, text)
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert out == ""
    [message] = error_lines(err)
    assert message.startswith(f"job.yaml:{line_of(text, 'from:')}: from: ")


def test_from_with_a_line_break_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('"Bot <bot@example.com>"', '"Bot <bot@example.com>\\r\\nBcc: x@evil.org"')
    [problem] = load_problems(write_job(tmp_path, text))
    assert problem.startswith(f"job.yaml:{line_of(text, 'from:')}: from: ")
    assert "line break" in problem


def test_invalid_reply_to_names_reply_to(tmp_path: Path) -> None:
    text = VALID.replace("subject:", "reply_to: team@\nsubject:")
    [problem] = load_problems(write_job(tmp_path, text))
    assert problem.startswith(f"job.yaml:{line_of(text, 'reply_to')}: reply_to: 'team@' ")


def test_from_with_trailing_words_is_refused_not_glued_onto_the_domain(tmp_path: Path) -> None:
    text = VALID.replace('"Bot <bot@example.com>"', '"bob@example.com extra"')
    [problem] = load_problems(write_job(tmp_path, text))
    assert problem.startswith(f"job.yaml:{line_of(text, 'from:')}: from: ")


def test_from_with_an_unclosed_angle_bracket_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('"Bot <bot@example.com>"', '"Bot <bot@example.com"')
    [problem] = load_problems(write_job(tmp_path, text))
    assert problem.startswith(f"job.yaml:{line_of(text, 'from:')}: from: ")


def test_from_error_quotes_the_value_as_written(tmp_path: Path) -> None:
    text = VALID.replace('"Bot <bot@example.com>"', '"not an address"')
    [problem] = load_problems(write_job(tmp_path, text))
    assert "'not an address'" in problem


# --- the schema --------------------------------------------------------------------------------


def test_schema_command_prints_exactly_the_packaged_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packaged = resources.files("batchmail").joinpath("job.schema.json").read_text("utf-8")
    code, out, err = cli(capsys, "schema")
    assert (code, err) == (0, "")
    assert out == packaged
    assert json.loads(out)["title"] == "batchmail job"


def test_published_schema_is_byte_identical_to_the_packaged_one() -> None:
    packaged = resources.files("batchmail").joinpath("job.schema.json").read_bytes()
    published = (REPO / "schemas" / "job.schema.json").read_bytes()
    assert published == packaged


def test_schema_closes_every_object() -> None:
    schema = json.loads(resources.files("batchmail").joinpath("job.schema.json").read_text())
    open_objects: list[str] = []
    recipient = "/properties/recipients/items"  # a recipient's extra fields are its variables

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            closed = node.get("additionalProperties") is False
            if node.get("type") == "object" and "properties" in node and where != recipient:
                open_objects.extend([] if closed else [where])
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(schema, "")
    assert open_objects == []


# --- the repository's own jobs -----------------------------------------------------------------

REPO_JOBS = sorted((REPO / "jobs").glob("*.yaml"))
_ENV_NAMES = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|_env:\s*([A-Za-z_][A-Za-z0-9_]*)")


def test_the_repository_has_jobs_to_check() -> None:
    assert len(REPO_JOBS) >= 2


def _files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize("job", REPO_JOBS, ids=[p.name for p in REPO_JOBS])
def test_repository_job_validates_and_dry_runs_without_smtp_settings(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for match in _ENV_NAMES.finditer(job.read_text(encoding="utf-8")):
        monkeypatch.delenv(match[1] or match[2], raising=False)
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    before = _files_under(job.parent)

    code, out, err = cli(capsys, "validate", job)
    assert (code, err) == (0, "")
    found = re.fullmatch(r".*: valid: (\d+) messages\n", out)
    assert found, out
    count = int(found[1])
    assert count >= 1

    out_dir = tmp_path / "out"
    code, out, err = cli(capsys, "run", job, "--dry-run", "--out", out_dir)
    assert (code, err) == (0, "")
    assert f"{count} previewed" in out
    assert len(list(out_dir.glob("*.eml"))) == count
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert report["dry_run"] is True
    assert report["summary"]["total"] == count
    assert _files_under(job.parent) == before  # nothing written beside the job
