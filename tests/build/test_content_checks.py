"""Content checks on `validate`: each warning as users see it, one line per kind, and errors
(exit 2) with --strict."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cli, line_of, make_job, recipients

from batchmail.build.content_checks import GMAIL_CLIP_BYTES, MANY_RECIPIENTS, check_message
from batchmail.build.html_tags import relative

TEXT_AND_HTML = {"text": "templates/body.txt.j2", "html": "templates/body.html.j2"}


def job_with_html(folder: Path, html: str, **settings: object) -> Path:
    """make_job's job (3 recipients, text and HTML) with this HTML template."""
    job = make_job(folder, **settings)  # type: ignore[arg-type]
    (folder / "templates" / "body.html.j2").write_text(html, encoding="utf-8")
    return job


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_a_clean_job_validates_without_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = '<p>Hi {{ name }} <a href="https://example.com/a">a</a> <img src="cid:x" alt=""></p>'
    job = job_with_html(tmp_path, html)
    code, out, err = cli(capsys, "validate", job, "--strict")
    assert code == 0, err
    assert "valid: 3 messages" in out
    assert warning_lines(err) == []


def test_html_over_102_kb_warns_and_strict_refuses_naming_file_and_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padding = "x" * 79 + "\n"
    html = "<p>{{ name }}</p>\n" + padding * (103 * 1024 // len(padding))  # 103 KB
    job = job_with_html(tmp_path, html)

    code, out, err = cli(capsys, "validate", job)
    assert code == 0
    assert "valid: 3 messages" in out
    [line] = warning_lines(err)
    assert line.startswith("warning: html-clipped in 3 messages (")
    assert "user1@example.com, user2@example.com, user3@example.com" in line
    assert f"over {GMAIL_CLIP_BYTES:,}" in line
    assert "Gmail clips it" in line

    code, out, err = cli(capsys, "validate", job, "--strict")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    text = job.read_text(encoding="utf-8")
    for number, line in enumerate(lines, start=1):
        where = f"{job}:{line_of(text, f'user{number}@example.com')}"
        assert line.startswith(f"{where}: html-clipped: the HTML part is ")
        assert line.endswith(f"(recipient {number}, user{number}@example.com)")


def test_the_html_part_is_measured_as_sent_after_its_transfer_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """35,000 accented letters are 70,000 bytes of UTF-8, but about three times as many in
    quoted-printable (=C3=A9), which is what travels and what Gmail counts."""
    job = job_with_html(tmp_path, "<p>" + "é" * 35_000 + "</p>")
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    [line] = warning_lines(err)
    assert "html-clipped" in line
    size = int(line.split("the HTML part is ")[1].split(" bytes")[0].replace(",", ""))
    assert size > 3 * 70_000


def test_html_just_under_the_limit_does_not_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padding = "y" * 99 + "\n"  # each line goes as 101 bytes (CRLF)
    job = job_with_html(tmp_path, padding * (GMAIL_CLIP_BYTES // 101))
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    assert warning_lines(err) == []


def test_html_without_a_text_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = make_job(tmp_path, template={"text": None})
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    [line] = warning_lines(err)
    assert line.startswith("warning: html-without-text in 3 messages")
    assert "add template.text" in line
    assert cli(capsys, "validate", job, "--strict")[0] == 2


def test_a_text_only_job_has_no_html_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(tmp_path, template={"html": None})
    code, _, err = cli(capsys, "validate", job, "--strict")
    assert code == 0, err
    assert warning_lines(err) == []


def test_images_without_alt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = (
        '<p>{{ name }}<img src="https://example.com/logo.png">'
        '<IMG SRC="https://example.com/b.png" ALT=""><img src="cid:chart"></p>'
    )
    job = job_with_html(tmp_path, html)
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    [line] = warning_lines(err)
    assert line.startswith("warning: img-without-alt in 3 messages")
    assert '<img src="https://example.com/logo.png">, <img src="cid:chart"> without alt' in line
    assert "b.png" not in line  # alt="" is a decorative image, as it should be

    code, _, err = cli(capsys, "validate", job, "--strict")
    assert code == 2
    assert "img-without-alt: <img src=" in err
    assert "(recipient 2, user2@example.com)" in err


def test_relative_links_and_image_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fine = (
        '<a href="https://example.com/">a</a><a href="http://example.com/">b</a>'
        '<a href="mailto:help@example.com">c</a><a href="tel:+15555550100">d</a>'
        '<img src="cid:logo" alt="logo"><a href="#top">e</a>'
    )
    relative_ones = '<a href="account/{{ name | urlencode }}">f</a><img src="img/x.png" alt="x">'
    job = job_with_html(tmp_path, f"<p>{fine}{relative_ones}</p>")
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    [line] = warning_lines(err)
    assert line.startswith("warning: relative-url in 3 messages")
    assert 'relative href="account/User%201", src="img/x.png"' in line
    listed = line.split(": a mailbox")[0]
    for absolute in ("https://", "http://", "mailto:", "tel:", "cid:", "#top"):
        assert absolute not in listed

    code, _, err = cli(capsys, "validate", job, "--strict")
    assert code == 2
    assert 'href="account/User%203"' in err
    assert "(recipient 3, user3@example.com)" in err


def test_only_absolute_addresses_and_fragments_stand_alone() -> None:
    for url in ("https://a.example/x", "HTTP://A.EXAMPLE", "mailto:a@b.example", "tel:+1", "#x"):
        assert not relative(url), url
    for url in (
        "x.html",
        "/x",
        "//cdn.example/x.png",
        "",
        "  ",
        "?q=1",
        "C:\\logo.png",
        "http://[",
    ):
        assert relative(url), url


def test_many_recipients_without_unsubscribe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    many = make_job(tmp_path / "many", recipients=recipients(MANY_RECIPIENTS + 1))
    code, _, err = cli(capsys, "validate", many)
    assert code == 0
    [line] = warning_lines(err)
    assert line == (
        f"warning: {many}: no-unsubscribe: 301 recipients and no unsubscribe: Gmail and Yahoo "
        "ask bulk senders for a List-Unsubscribe (set unsubscribe.url or unsubscribe.mailto)"
    )
    code, _, err = cli(capsys, "validate", many, "--strict")
    assert code == 2
    assert err.startswith(f"{many}: no-unsubscribe: 301 recipients")

    few = make_job(tmp_path / "few", recipients=recipients(MANY_RECIPIENTS))
    assert warning_lines(cli(capsys, "validate", few)[2]) == []
    url = "https://example.com/unsubscribe?u={{ email | urlencode }}"
    with_link = make_job(
        tmp_path / "link", recipients=recipients(MANY_RECIPIENTS + 1), unsubscribe={"url": url}
    )
    code, _, err = cli(capsys, "validate", with_link, "--strict")
    assert code == 0, err


def test_one_line_per_kind_however_many_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = '<p>{{ name }}<img src="https://example.com/{{ email }}.png"></p>'
    url = "https://example.com/unsubscribe"
    job = job_with_html(tmp_path, html, recipients=recipients(1000), unsubscribe={"url": url})
    code, _, err = cli(capsys, "validate", job)
    assert code == 0
    [line] = warning_lines(err)
    assert line == (
        "warning: img-without-alt in 1,000 messages (user1@example.com, user2@example.com, "
        "user3@example.com and 997 more): "
        '<img src="https://example.com/user1@example.com.png"> without alt text'
    )
    code, _, err = cli(capsys, "validate", job, "--strict")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 21  # the first 20 errors, then how many more
    assert lines[-1] == "... and 980 more problems"


HTML_ALPHABET = "<>/=\"' abcimgsrchefalt#:!-&;x\n\u00e9"
html_text = st.text(alphabet=st.sampled_from(HTML_ALPHABET), max_size=300)
tag = st.builds(
    lambda name, attrs, body: f"<{name}{attrs}>{body}</{name}>",
    st.sampled_from(["img", "a", "IMG", "p", "script", "style", "!--", "![CDATA["]),
    st.lists(
        st.builds(
            lambda key, value, quote: f" {key}={quote}{value}{quote}",
            st.sampled_from(["src", "href", "alt", "SRC", "data-x"]),
            st.text(max_size=20),
            st.sampled_from(['"', "'", ""]),
        ),
        max_size=3,
    ).map("".join),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=st.one_of(html_text, st.lists(tag, max_size=8).map("".join), st.text(max_size=200)))
def test_any_html_is_judged_without_raising(html: str) -> None:
    for text in (None, "text"):
        found = check_message("a@example.com", "job.yaml:3", text, html)
        codes = {w.code for w in found}
        assert codes <= {"html-clipped", "html-without-text", "img-without-alt", "relative-url"}
        assert ("html-without-text" in codes) == (text is None)
        for warning in found:
            assert "\n" not in warning.text
            assert "\r" not in warning.text
            assert warning.recipient == "a@example.com"
