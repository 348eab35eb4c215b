"""`template.text: auto` and `template.inline_css`: the text part derived from the HTML, and the
HTML's `<style>` rules inlined, as a recipient receives them."""

from __future__ import annotations

import re
import subprocess
import sys
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from smtpserver import SmtpServerFactory
from support import PNG, REPO, line_of, make_job, parse, recipients, run_cli, write_files

from batchmail.build.compose import Composer
from batchmail.load.job import load_job

STYLED = """\
<!DOCTYPE html>
<html><head><style>
p.lead { color: #336699; font-size: 18px }
a { color: #cc0000; text-decoration: none }
</style></head>
<body>
<p class="lead">Hello {{ name }} of {{ team }}, here is
<a href="https://reports.example.com/{{ team }}/latest">the report</a>.</p>
<ul><li>first point</li><li>second point</li></ul>
</body></html>
"""


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def elements(markup: str) -> _Elements:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return parser


def styled_job(folder: Path, port: int, html: str = STYLED, **template: Any) -> Path:
    write_files(folder, {"templates/styled.html.j2": html})
    return make_job(
        folder,
        port,
        recipients=recipients(2),
        attachments=None,
        template={"text": None, "html": "templates/styled.html.j2", **template},
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and the HTML of a multipart/alternative message."""
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    return text.get_content().replace("\r\n", "\n"), html.get_content()


def assert_inlined(markup: str) -> None:
    found = elements(markup)
    [lead] = [attrs for tag, attrs in found.tags if tag == "p"]
    assert lead["class"] == "lead"
    assert re.fullmatch(r"color: #336699;\s*font-size: 18px;?", lead["style"] or "")
    [link] = [attrs for tag, attrs in found.tags if tag == "a"]
    assert re.fullmatch(r"color: #cc0000;\s*text-decoration: none;?", link["style"] or "")
    assert "style" not in [tag for tag, _ in found.tags]  # every rule now lives in an attribute
    assert "p.lead" not in markup


def test_inline_css_gives_elements_style_attributes_in_the_received_html(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = styled_job(tmp_path, server.port, text="templates/body.txt.j2", inline_css=True)
    result = run_cli(capsys, "run", job)
    assert result.code == 0, result.err

    assert [m.rcpt_tos for m in server.messages] == [["user1@example.com"], ["user2@example.com"]]
    text, html = parts(parse(server.messages[0].data))
    assert text == "Hello User 1 of core.\n"  # a text template stays as it is
    assert_inlined(html)
    assert "Hello User 1 of core, here is" in " ".join(html.split())


def test_inline_css_keeps_at_rules_in_a_style_element(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    responsive = STYLED.replace(
        "</style>", "@media (max-width: 600px) { p.lead { font-size: 14px } }\n</style>"
    )
    job = styled_job(tmp_path, server.port, responsive, inline_css=True)
    assert run_cli(capsys, "run", job).code == 0

    body = parse(server.messages[0].data)
    assert body.get_content_type() == "text/html"  # no text part unless asked for
    found = elements(body.get_content())
    [lead] = [attrs for tag, attrs in found.tags if tag == "p"]
    assert "color: #336699" in (lead["style"] or "")
    [kept] = found.styles  # what an attribute cannot hold stays for the clients that read it
    assert "@media (max-width: 600px)" in kept
    assert "color: #336699" not in kept


def test_text_auto_sends_a_text_part_with_the_htmls_words_and_link_targets(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = styled_job(tmp_path, server.port, text="auto", inline_css=True)
    assert run_cli(capsys, "run", job).code == 0

    text, html = parts(parse(server.messages[1].data))
    assert (
        "Hello User 2 of core, here is [the report](https://reports.example.com/core/latest)"
        in (" ".join(text.split()))
    )
    assert re.search(r"^\s*\* first point$", text, re.MULTILINE)
    assert re.search(r"^\s*\* second point$", text, re.MULTILINE)
    assert "color" not in text
    assert "<" not in text
    assert_inlined(html)


def test_dry_run_eml_carries_the_derived_text_and_the_inlined_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = styled_job(tmp_path / "job", 2525, text="auto", inline_css=True)
    result = run_cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out")
    assert result.code == 0, result.err

    previews = sorted((tmp_path / "out").glob("*.eml"))
    assert len(previews) == 2
    text, html = parts(parse(previews[0].read_bytes()))
    assert "[the report](https://reports.example.com/core/latest)" in text
    assert "Hello User 1 of core" in " ".join(text.split())
    assert_inlined(html)


def test_markdown_html_goes_through_the_inliner_with_its_images_kept(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    write_files(tmp_path, {"templates/body.md": "# Hi {{ name }}\n\n![Logo](logo.png)\n"})
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(1),
        attachments=None,
        template={"text": None, "html": None, "markdown": "templates/body.md"},
    )
    (tmp_path / "templates" / "logo.png").write_bytes(PNG)
    data = yaml.safe_load(job.read_text(encoding="utf-8"))
    data["template"].update(inline_images=True, inline_css=True)
    job.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert run_cli(capsys, "run", job).code == 0

    message = parse(server.messages[0].data)
    text, related = message.iter_parts()
    assert text.get_content().replace("\r\n", "\n") == "# Hi User 1\n\n![Logo](logo.png)\n"
    html, image = related.iter_parts()
    found = elements(html.get_content())
    [img] = [attrs for tag, attrs in found.tags if tag == "img"]
    assert img["src"] == f"cid:{str(image['Content-ID']).strip('<>')}"
    assert img["alt"] == "Logo"


@pytest.mark.parametrize(
    ("template", "loaded"),
    [({}, "False False"), ({"text": "auto", "inline_css": True}, "True True")],
)
def test_the_libraries_are_loaded_only_by_jobs_that_use_them(
    tmp_path: Path, template: dict[str, Any], loaded: str
) -> None:
    styled_job(tmp_path, 2525, **template)
    probe = (
        "import sys; from batchmail.cli import main; "
        "code = main(['run', 'job.yaml', '--dry-run', '--out', 'out', '--quiet']); "
        "print(code, 'css_inline' in sys.modules, 'markdownify' in sys.modules)"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.stdout.splitlines()[-1] == f"0 {loaded}", found.stderr


def test_a_derived_text_part_satisfies_the_content_check_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = styled_job(tmp_path / "without", 2525)
    result = run_cli(capsys, "validate", job, "--strict")
    assert result.code == 2
    assert "an HTML body without a text part" in result.err

    job = styled_job(tmp_path / "derived", 2525, text="auto")
    result = run_cli(capsys, "validate", job, "--strict")
    assert result.code == 0, result.err
    assert "without a text part" not in result.err + result.out


# --- job errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "key", "expected"),
    [
        (
            {"inline_css": "yes"},
            "inline_css",
            "template.inline_css: 'yes' is not of type 'boolean'",
        ),
        ({"text": 5}, "text", "template.text: 5 is not of type 'string'"),
        ({"text": ""}, "text", "template.text: '' should be non-empty"),
        (
            {"text": "auto", "html": None},
            "text",
            "template.text: auto derives the text part from the HTML part: it needs template.html",
        ),
        (
            {"html": None, "inline_css": True},
            "inline_css",
            "template.inline_css: inline_css inlines the CSS of the HTML part: it needs",
        ),
    ],
)
def test_wrong_settings_are_located_job_errors(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    template: dict[str, Any],
    key: str,
    expected: str,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, template=template)
    result = run_cli(capsys, "run", job)
    assert result.code == 2
    line = line_of(job.read_text(encoding="utf-8"), f"{key}:")
    assert f"job.yaml:{line}: {expected}" in result.err
    assert "Traceback" not in result.err
    assert server.messages == []


def test_a_css_error_names_the_template_and_the_recipient_and_nothing_is_sent(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    html = '<style>p { color: red }</style><p style="{{ look }}">Hi {{ name }}</p>\n'
    people = [
        {"email": "ann@example.com", "name": "Ann", "look": "color: blue"},
        {"email": "bob@example.com", "name": "Bob", "look": "{"},
    ]
    job = styled_job(tmp_path, server.port, html, inline_css=True)
    data = yaml.safe_load(job.read_text(encoding="utf-8"))
    job.write_text(yaml.safe_dump({**data, "recipients": people}), encoding="utf-8")
    result = run_cli(capsys, "run", job)
    assert result.code == 2
    [line] = [line for line in result.err.splitlines() if "inline_css" in line]
    template = tmp_path / "templates" / "styled.html.j2"
    assert line.startswith(f"{template}: template.inline_css: cannot inline its CSS: ")
    assert "bob@example.com" in line
    assert "ann@example.com" not in line
    assert server.messages == []


# --- any text survives -----------------------------------------------------------------------

# Text a person could put in a data file: no control characters, surrogates or unassigned
# code points (a data file cannot carry those).
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn")), min_size=1
).filter(lambda value: value.strip())


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("derived")
    return styled_job(
        folder, 2525, STYLED.replace("{{ name }}", "{{ who }}"), text="auto", inline_css=True
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(who=_TEXT, team=_TEXT)
@example(who="<b>Zoë</b> & \"Ünïcode\" 'q'", team="{{ x }} ∑ 😀 \u00a0 [a](b)")
@example(who="x\u2028y", team="\ufeffz")
def test_any_text_goes_through_text_auto_and_inline_css(
    composed: Path, who: str, team: str
) -> None:
    """`who` and `team` are shown in the HTML's text and in a link's target."""
    data = yaml.safe_load(composed.read_text(encoding="utf-8"))
    data["recipients"] = [{"email": "a@example.com", "name": "A", "who": who, "team": team}]
    composed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    composer = Composer(load_job(composed), print)
    [recipient] = composer.recipients([])
    message = composer.message_bytes(recipient, message_id="<x@example.com>", date="d")
    text, html = parts(parse(message))
    flat = " ".join(text.split())
    assert " ".join(who.split()) in flat
    assert " ".join(team.split()) in flat
    assert 'class="lead" style="color: #336699;' in html
