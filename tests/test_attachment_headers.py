"""Attachments as other mail software reads them: the charset of text files (RFC 2046 4.1.2: a
text part without one is US-ASCII), and file names that survive any MIME parser (RFC 2231)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from support import dry_run, make_job, parse, recipients

from batchmail.build.mime import attachment_part

CSV = "name,city\nJörg,Köln\nZoë,Zürich\n"


def attachments_of(root: Path) -> dict[str, EmailMessage]:
    [eml] = sorted((root / "out").glob("*.eml"))[:1]
    message = parse(eml.read_bytes())
    return {str(part.get_filename()): part for part in message.iter_attachments()}


def preview_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, EmailMessage]:
    make_job(tmp_path, attachments=["files/*.csv", "files/*.txt"], recipients=recipients(1))
    monkeypatch.chdir(tmp_path)
    code, _, err = dry_run(capsys)
    assert code == 0, err
    return attachments_of(tmp_path)


def test_text_attachments_carry_their_charset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "people.csv").write_text(CSV, encoding="utf-8")
    (files / "notes.txt").write_text("Grüße aus Köln\n", encoding="utf-8")
    (files / "plain.txt").write_text("only ASCII here\n", encoding="ascii")
    (files / "latin.txt").write_text("Grüße aus Köln, à bientôt\n", encoding="latin-1")
    (files / "windows.csv").write_text("quote,“Grüße” \u2013 5 €\n", encoding="cp1252")
    (files / "wide.txt").write_text("Grüße aus Köln\n", encoding="utf-16")

    parts = preview_files(tmp_path, monkeypatch, capsys)

    charsets = {name: part.get_content_charset() for name, part in parts.items()}
    assert charsets == {
        "people.csv": "utf-8",
        "notes.txt": "utf-8",
        "plain.txt": "utf-8",  # ASCII is UTF-8: one label for every UTF-8 file
        "latin.txt": "iso-8859-1",
        "windows.csv": "windows-1252",
        "wide.txt": "utf-16",
    }
    assert parts["people.csv"].get_content_type() == "text/csv"
    assert parts["people.csv"].get_content() == CSV
    assert parts["latin.txt"].get_content() == "Grüße aus Köln, à bientôt\n"
    assert parts["windows.csv"].get_content() == "quote,“Grüße” \u2013 5 €\n"
    assert parts["wide.txt"].get_content().lstrip("\ufeff") == "Grüße aus Köln\n"


def test_a_charset_given_with_the_content_type_is_kept() -> None:
    part = attachment_part("people.csv", CSV.encode("utf-8"), "text/csv; charset=cp1252")
    assert part.encoded.split(b"\r\n\r\n")[0].lower().count(b"charset") == 1


def test_binary_attachments_get_no_charset() -> None:
    part = attachment_part("data.bin", bytes(range(256)), "application/octet-stream")
    assert b"charset" not in part.encoded.split(b"\r\n\r\n")[0]
