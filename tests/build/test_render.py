"""Rendering: strict undefined variables, template errors with file:line, autoescape, sandbox.

Each test runs the command line in-process and looks at what the user sees: stderr, the exit
code, and the decoded parts of the dry run's `.eml` files.
"""

from __future__ import annotations

import json
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from support import cli, dry_run, eml_count, line_of, write_job_file

TEXT = "Hello {{ name }},\nteam: {{ team }}\n"
HTML = "<p>Hello {{ name }},</p>\n<p>team: {{ team }}</p>\n"

RECIPIENTS = """\
recipients:
  - email: alice@example.com
    name: Alice
    team: core
  - email: bob@example.org
    name: Bob
    team: docs
"""


def job_text(
    *,
    subject: str = "Report for {{ name }}",
    text: str | None = "templates/mail.txt.j2",
    html: str | None = "templates/mail.html.j2",
    recipients: str = RECIPIENTS,
    extra: str = "",
) -> str:
    template = "".join(
        f"  {part}: {path}\n" for part, path in (("text", text), ("html", html)) if path
    )
    return (
        "version: 1\n"
        'from: "Bot <bot@example.com>"\n'
        f"subject: {json.dumps(subject)}\n"
        f"template:\n{template}"
        f"{extra}"
        f"{recipients}"
        "smtp:\n"
        "  host: 127.0.0.1\n"
        "  security: none\n"
    )


def write_job(
    root: Path,
    text: str | None = None,
    files: dict[str, str | bytes] | None = None,
) -> str:
    """Write job.yaml and its templates under `root`; return the job text."""
    text = job_text() if text is None else text
    files = {"templates/mail.txt.j2": TEXT, "templates/mail.html.j2": HTML, **(files or {})}
    write_job_file(root, text, files)
    return text


def messages(root: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    found = []
    for path in sorted((root / "out").glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body((kind,))
    assert body is not None, f"no text/{kind} part"
    content: str = body.get_content()
    return content.replace("\r\n", "\n")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# --- the happy path ----------------------------------------------------------------------------


def test_text_and_html_render_per_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path)
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert "2 previewed" in out
    alice, bob = messages(tmp_path)
    assert alice.get_content_type() == "multipart/alternative"
    assert alice["subject"] == "Report for Alice"
    assert part(alice, "plain") == "Hello Alice,\nteam: core\n"
    assert part(alice, "html") == "<p>Hello Alice,</p>\n<p>team: core</p>\n"
    assert bob["subject"] == "Report for Bob"
    assert part(bob, "plain") == "Hello Bob,\nteam: docs\n"


# --- undefined variables -----------------------------------------------------------------------


def test_undefined_variable_in_html_names_template_line_and_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipients = (
        "recipients:\n"
        "  - email: alice@example.com\n    name: Alice\n    team: core\n"
        "  - email: bob@example.org\n    name: Bob\n"  # no team
    )
    html = "<html>\n<body>\n<p>Hello {{ name }}</p>\n\n<p>{{ team }}</p>\n</body>\n</html>\n"
    write_job(
        tmp_path,
        job_text(text=None, html="templates/x.html.j2", recipients=recipients),
        files={"templates/x.html.j2": html},
    )
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err == "templates/x.html.j2:5: 'team' is undefined (recipient 2, bob@example.org)\n"
    assert eml_count(tmp_path) == 0  # not even Alice's message: nothing is sent unless all render


def test_undefined_variable_is_never_an_empty_string(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": "a\nb\n{% if nope %}x{% endif %}\n"})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.splitlines() == [
        "templates/mail.txt.j2:3: 'nope' is undefined (recipient 1, alice@example.com)",
        "templates/mail.txt.j2:3: 'nope' is undefined (recipient 2, bob@example.org)",
    ]


def test_undefined_attribute_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": "{{ name }}\n{{ team.lead }}\n"})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("templates/mail.txt.j2:2: 'str object' has no attribute 'lead' ")


def test_undefined_variable_in_subject_points_at_the_job_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = write_job(tmp_path, job_text(subject="Build {{ build }} for {{ name }}"))
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    line = line_of(text, "subject:")
    assert err.splitlines()[0] == (
        f"job.yaml:{line}: 'build' is undefined (recipient 1, alice@example.com)"
    )
    assert eml_count(tmp_path) == 0


def test_undefined_variable_in_an_included_template_names_that_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(
        tmp_path,
        files={
            "templates/mail.txt.j2": 'Hello {{ name }}\n{% include "templates/part.j2" %}\n',
            "templates/part.j2": "one\ntwo\n{{ missing }}\n",
        },
    )
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.splitlines()[0] == (
        "templates/part.j2:3: 'missing' is undefined (recipient 1, alice@example.com)"
    )


def test_undefined_variable_in_an_included_template_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(
        tmp_path,
        files={
            "templates/mail.txt.j2": 'Hello {{ name }}\n{% include "templates/part.j2" %}\n',
            "templates/part.j2": "one\ntwo\n{{ missing }}\n",
        },
    )
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert "'missing' is undefined (recipient 1, alice@example.com)" in err


# --- template errors ---------------------------------------------------------------------------

BROKEN = "Hello {{ name }}\nline two\n{% if team %}\nunclosed\n"


def test_template_syntax_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": "Hello {{ name }}\n{{ name }\n"})
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert "mail.txt.j2:2: template syntax error: " in line
    assert eml_count(tmp_path) == 0


def test_unclosed_block_is_a_syntax_error_at_the_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, files={"templates/mail.html.j2": BROKEN})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    [line] = err.splitlines()
    assert "mail.html.j2:3: template syntax error: Unexpected end of template" in line
    assert "'if'" in line


def test_template_syntax_error_shows_the_path_as_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": "Hello {{ name }}\n{{ name }\n"})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith("templates/mail.txt.j2:2: template syntax error: ")


def test_syntax_error_in_subject_points_at_the_job_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = write_job(tmp_path, job_text(subject="Report for {{ name }"))
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err.startswith(f"job.yaml:{line_of(text, 'subject:')}: template syntax error: ")


def test_missing_template_file_names_the_job_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = write_job(tmp_path, job_text(html="templates/nope.html.j2"))
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err == (
        f"job.yaml:{line_of(text, 'html:')}: template file not found (or outside base_dir): "
        "templates/nope.html.j2\n"
    )
    assert eml_count(tmp_path) == 0


def test_template_outside_base_dir_is_not_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (tmp_path / "secret.txt").write_text("the secret {{ name }}\n", encoding="utf-8")
    text = write_job(job_dir, job_text(text="../secret.txt"))
    code, out, err = cli(capsys, "validate", job_dir / "job.yaml")
    assert code == 2
    assert out == ""
    assert err.startswith(
        f"job/job.yaml:{line_of(text, 'text:')}: template file not found (or outside base_dir): "
    )


def test_missing_include_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": '{% include "templates/gone.j2" %}\n'})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert "templates/gone.j2" in err.splitlines()[0]


# --- autoescape --------------------------------------------------------------------------------


@pytest.mark.parametrize("html_name", ["templates/mail.html.j2", "templates/mail.j2"])
def test_recipient_data_is_escaped_in_html_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], html_name: str
) -> None:
    recipients = (
        "recipients:\n"
        "  - email: alice@example.com\n"
        '    name: "Alice & <b>Co</b>"\n'
        "    team: \"<script>alert('x')</script>\"\n"
    )
    write_job(
        tmp_path,
        job_text(html=html_name, recipients=recipients),
        files={html_name: HTML},
    )
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    [message] = messages(tmp_path)
    assert part(message, "html") == (
        "<p>Hello Alice &amp; &lt;b&gt;Co&lt;/b&gt;,</p>\n"
        "<p>team: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</p>\n"
    )
    assert part(message, "plain") == "Hello Alice & <b>Co</b>,\nteam: <script>alert('x')</script>\n"
    assert message["subject"] == "Report for Alice & <b>Co</b>"  # a subject is plain text


def test_markup_in_the_html_template_itself_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = job_text(extra='vars:\n  link: "<a href=\\"https://example.com\\">x</a>"\n')
    write_job(
        tmp_path,
        text,
        files={"templates/mail.html.j2": "<p><i>{{ name }}</i> {{ link }} {{ link|safe }}</p>\n"},
    )
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    html = part(messages(tmp_path)[0], "html")
    assert html == (
        "<p><i>Alice</i> &lt;a href=&#34;https://example.com&#34;&gt;x&lt;/a&gt; "
        '<a href="https://example.com">x</a></p>\n'
    )


# --- the sandbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "attribute"),
    [
        ("''.__class__.__mro__", "__class__"),
        ("name.__class__.__mro__[1].__subclasses__()", "__class__"),
        ("cycler.__init__.__globals__", "__init__"),
        ("lipsum.__globals__", "__globals__"),
        ("'{0.__class__}'.format(name)", "__class__"),
    ],
)
def test_sandbox_refuses_unsafe_access_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expression: str, attribute: str
) -> None:
    write_job(tmp_path, files={"templates/mail.txt.j2": f"Hello\n{{{{ {expression} }}}}\n"})
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith("templates/mail.txt.j2:2: ")
    assert f"'{attribute}'" in first
    assert "unsafe" in first
    assert first.endswith("(recipient 1, alice@example.com)")
    assert eml_count(tmp_path) == 0


def test_sandbox_applies_to_the_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = write_job(tmp_path, job_text(subject="{{ ''.__class__.__mro__ }}"))
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith(f"job.yaml:{line_of(text, 'subject:')}: ")
    assert "unsafe" in first


def test_recipient_data_is_not_evaluated_as_a_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipients = (
        "recipients:\n"
        "  - email: alice@example.com\n"
        "    name: \"{{ ''.__class__ }}\"\n"
        '    team: "{% raw %}x"\n'
    )
    write_job(tmp_path, job_text(recipients=recipients))
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    [message] = messages(tmp_path)
    assert part(message, "plain") == "Hello {{ ''.__class__ }},\nteam: {% raw %}x\n"


# --- the context -------------------------------------------------------------------------------


def test_recipient_fields_override_job_vars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipients = (
        "recipients:\n"
        "  - email: alice@example.com\n    name: Alice\n    team: own-team\n"
        "  - email: bob@example.org\n    name: Bob\n"
    )
    extra = "vars:\n  team: job-team\n  name: Job Name\n  greeting: Hi\n"
    write_job(
        tmp_path,
        job_text(subject="{{ greeting }} {{ name }}", recipients=recipients, extra=extra),
        files={"templates/mail.txt.j2": "{{ greeting }} {{ name }} of {{ team }}\n"},
    )
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    alice, bob = messages(tmp_path)
    assert part(alice, "plain") == "Hi Alice of own-team\n"
    assert part(bob, "plain") == "Hi Bob of job-team\n"  # the job's value where none is given
    assert (alice["subject"], bob["subject"]) == ("Hi Alice", "Hi Bob")


def test_interpolated_job_vars_reach_the_templates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BM_BUILD", "1234")
    monkeypatch.delenv("BM_BRANCH", raising=False)
    extra = 'vars:\n  build: "${BM_BUILD}"\n  branch: "${BM_BRANCH:-main}"\n'
    write_job(
        tmp_path,
        job_text(subject="Build {{ build }} on {{ branch }}", extra=extra),
        files={"templates/mail.txt.j2": "{{ name }}: build {{ build }} ({{ branch }})\n"},
    )
    code, _, err = dry_run(capsys)
    assert (code, err) == (0, "")
    alice = messages(tmp_path)[0]
    assert alice["subject"] == "Build 1234 on main"
    assert part(alice, "plain") == "Alice: build 1234 (main)\n"


def test_line_break_rendered_into_the_subject_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipients = (
        "recipients:\n"
        "  - email: alice@example.com\n"
        "    name: Alice\n"
        '    team: "core\\r\\nBcc: evil@example.org"\n'
    )
    text = write_job(tmp_path, job_text(subject="Report for {{ team }}", recipients=recipients))
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err == (
        f"job.yaml:{line_of(text, 'alice@example.com')}: subject: "
        "'Report for core\\r\\nBcc: evil@example.org' contains a line break, refused in a "
        "header (recipient 1, alice@example.com)\n"
    )
    assert eml_count(tmp_path) == 0


# --- limits ------------------------------------------------------------------------------------


def test_max_recipients_below_the_count_fails_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, job_text(extra="limits:\n  max_recipients: 1\n"))
    code, out, err = dry_run(capsys)
    assert code == 2
    assert out == ""
    assert err == "job.yaml: 2 recipients, over limits.max_recipients (1)\n"
    assert eml_count(tmp_path) == 0
    # Only the report is written, and it says the job was invalid and lists nobody.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "invalid"
    assert report["errors"] == ["job.yaml: 2 recipients, over limits.max_recipients (1)"]
    assert (report["summary"]["total"], report["recipients"]) == (0, [])

    code, out, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    assert err == "job.yaml: 2 recipients, over limits.max_recipients (1)\n"


def test_max_recipients_equal_to_the_count_is_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path, job_text(extra="limits:\n  max_recipients: 2\n"))
    code, out, err = dry_run(capsys)
    assert (code, err) == (0, "")
    assert eml_count(tmp_path) == 2
    assert "2 previewed" in out


def test_max_recipients_counts_recipients_from_the_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "email,name,team\n" + "".join(f"u{i}@example.com,U{i},t\n" for i in range(5))
    text = write_job(
        tmp_path,
        job_text(extra="limits:\n  max_recipients: 3\nrecipients_file: people.csv\n"),
        files={"people.csv": data},
    )
    code, _, err = dry_run(capsys)
    assert code == 2
    assert err == (
        f"job.yaml:{line_of(text, 'recipients_file')}: 7 recipients, over "
        "limits.max_recipients (3)\n"
    )
    assert eml_count(tmp_path) == 0
