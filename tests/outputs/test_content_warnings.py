"""Content warnings where a run leaves them: the report, JUnit, the dry run's preview page; and
`run --strict`, which sends nothing when any message has one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from smtpserver import SmtpServerFactory
from support import cli, make_job, report_of

IMG_WITHOUT_ALT = '<p>Hello {{ name }} <img src="https://example.com/{{ team }}.png"></p>\n'
NO_ALT_TEXT = '<img src="https://example.com/core.png"> without alt text'


def job_with_html(folder: Path, html: str, port: int = 25, **settings: object) -> Path:
    job = make_job(folder, port, **settings)  # type: ignore[arg-type]
    (folder / "templates" / "body.html.j2").write_text(html, encoding="utf-8")
    return job


def test_run_strict_with_a_103_kb_html_body_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    html = "<p>{{ name }}</p>\n" + ("z" * 99 + "\n") * 1055  # 103 KB
    job = job_with_html(tmp_path, html, server.port, rate={"connections": 2})
    report = tmp_path / "report.json"

    code, out, err = cli(capsys, "run", job, "--strict", "--report", report)

    assert code == 2
    assert out == ""
    assert server.messages == []
    assert server.connections == 0
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(f"{job}:" in line and ": html-clipped: the HTML part is " in line for line in lines)
    assert lines[0].endswith("(recipient 1, user1@example.com)")
    written = report_of(report)
    assert written["status"] == "invalid"
    assert written["errors"] == lines
    assert written["recipients"] == []

    code, _, err = cli(capsys, "run", job, "--report", report)  # without --strict: it goes
    assert code == 0, err
    assert len(server.messages) == 3
    assert "warning: html-clipped in 3 messages" in err


def test_report_and_junit_carry_each_messages_warnings(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = job_with_html(tmp_path, IMG_WITHOUT_ALT, server.port, rate={"connections": 2})
    (tmp_path / "templates" / "body.html.j2").write_text(
        '{% if name == "User 2" %}<p>fine</p>{% else %}' + IMG_WITHOUT_ALT + "{% endif %}",
        encoding="utf-8",
    )
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"

    code, _, err = cli(capsys, "run", job, "--report", report, "--junit", junit)

    assert code == 0, err
    assert len(server.messages) == 3
    assert "warning: img-without-alt in 2 messages (user1@example.com, user3@example.com)" in err
    written = report_of(report)
    assert written["warnings"] == {"total": 2, "by_code": {"img-without-alt": 2}, "job": []}
    warned = {entry["email"]: entry["warnings"] for entry in written["recipients"]}
    expected = [{"code": "img-without-alt", "text": NO_ALT_TEXT}]
    assert warned == {
        "user1@example.com": expected,
        "user2@example.com": [],
        "user3@example.com": expected,
    }

    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == set(warned)
    first = cases["user1@example.com"].find("system-out")
    assert first is not None
    assert first.text == f"warning: img-without-alt: {NO_ALT_TEXT}\n"
    assert cases["user2@example.com"].find("system-out") is None
    assert cases["user1@example.com"].find("failure") is None  # a warning fails no test


def test_junit_carries_the_jobs_own_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = [{"email": f"p{i}@example.com", "name": "P", "team": "t"} for i in range(301)]
    job = make_job(tmp_path, recipients=people)
    junit = tmp_path / "junit.xml"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out", "--junit", junit)
    assert code == 0, err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    said = suite.find("system-out")
    assert said is not None
    assert said.text is not None
    assert said.text.startswith("warning: no-unsubscribe: 301 recipients and no unsubscribe")
    report = report_of(tmp_path / "out" / "report.json")
    assert report["warnings"]["by_code"] == {"no-unsubscribe": 1}
    assert report["warnings"]["job"][0]["code"] == "no-unsubscribe"


class _Panels(HTMLParser):
    """The preview page's content-check panels: the summary's lines, and each card's."""

    def __init__(self) -> None:
        super().__init__()
        self.card = ""
        self.panel: str | None = None  # the panel being read: "summary" or a card's id
        self.items: dict[str, list[str]] = {}
        self.stats: list[str] = []
        self._in_item = False
        self._in_stat = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "article":
            self.card = found.get("id") or ""
        elif tag == "section" and "checks" in classes:
            self.panel = "summary" if "job-checks" in classes else self.card
            self.items.setdefault(self.panel, [])
        elif tag == "li" and self.panel is not None:
            self._in_item = True
            self.items[self.panel].append("")
        elif tag in ("dt", "dd"):
            self._in_stat = True
            self.stats.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.panel = None
        elif tag == "li":
            self._in_item = False
        elif tag in ("dt", "dd"):
            self._in_stat = False

    def handle_data(self, data: str) -> None:
        if self._in_item and self.panel is not None:
            self.items[self.panel][-1] += data
        if self._in_stat:
            self.stats[-1] += data


def test_the_preview_page_shows_a_panel_per_message_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(tmp_path, template={"text": None})
    (tmp_path / "templates" / "body.html.j2").write_text(
        '{% if name == "User 2" %}<p><a href="/me">me</a></p>{% else %}<p>fine</p>{% endif %}',
        encoding="utf-8",
    )
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out")
    assert code == 0, err

    page = _Panels()
    page.feed((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))

    summary = page.items["summary"]
    assert summary == [
        "html-without-text in 3 messages (user1@example.com, user2@example.com, "
        "user3@example.com): an HTML body without a text part: add template.text for readers "
        "and filters that read text",
        'relative-url in 1 message (user2@example.com): relative href="/me": a mailbox has no '
        "page to resolve it against (use an absolute https URL, or cid: for an attached image)",
    ]
    assert page.stats[page.stats.index("With warnings") + 1] == "3"
    without_text = "html-without-text an HTML body without a text part"
    assert [item.startswith(without_text) for item in page.items["m1"]] == [True]
    assert len(page.items["m2"]) == 2
    assert page.items["m2"][1].startswith('relative-url relative href="/me"')
    assert [item.startswith(without_text) for item in page.items["m3"]] == [True]


def test_a_preview_without_warnings_has_no_panels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(tmp_path)
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out")
    assert code == 0, err
    assert "warning" not in err
    page = _Panels()
    page.feed((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    assert page.items == {}
    assert page.stats[page.stats.index("With warnings") + 1] == "0"
