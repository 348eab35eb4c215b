"""Attachments as other mail software reads them: the charset of text files (RFC 2046 4.1.2: a
text part without one is US-ASCII), and file names that survive any MIME parser (RFC 2231)."""

from __future__ import annotations

import email.utils
import urllib.parse
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import dry_run, make_job, parse, recipients

from batchmail.build.mime import Content, MessageBuilder, attachment_part
from batchmail.load.addresses import parse_mailbox

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


# --- file names ----------------------------------------------------------------------------


def built_attachment(filename: str) -> tuple[bytes, EmailMessage]:
    """The message batchmail builds with one attachment of that name, and its parsed part."""
    content = Content(
        to=parse_mailbox("a@example.com"),
        subject="s",
        text="t",
        html=None,
        attachments=[attachment_part(filename, b"%PDF-1.4\n", "application/pdf")],
    )
    builder = MessageBuilder(parse_mailbox("Reports <reports@example.com>"))
    data = builder.build(content, message_id="<1@example.com>", date="Mon, 1 Dec 2026 00:00:00")
    [part] = parse(data).iter_attachments()
    return data, part


@pytest.mark.parametrize(
    "filename",
    [
        'report "final".pdf',
        "back\\slash.pdf",
        'both \\ and ".pdf',
        "tab\there.pdf",
        "report.pdf\n",
        "line\r\nContent-Type: text/html",
        "Bericht für Jörg.pdf",
        "報告.pdf",
    ],
)
def test_fragile_file_names_use_rfc_2231(filename: str) -> None:
    data, part = built_attachment(filename)
    assert b"filename*=utf-8''" in data
    assert b'filename="' not in data
    assert b"name*=utf-8''" in data.split(b"Content-Disposition")[0]  # Content-Type's name too
    assert part.get_filename() == filename.strip()  # Python strips whitespace at either end


def test_plain_file_names_stay_readable() -> None:
    data, part = built_attachment("Quarterly report (Q3).pdf")
    assert b'filename="Quarterly report (Q3).pdf"' in data
    assert part.get_filename() == "Quarterly report (Q3).pdf"
    data, _ = built_attachment("report.pdf")
    assert b"filename=report.pdf" in data


def filename_written(data: bytes) -> str:
    """The filename parameter as the header carries it, decoded by the letter of RFC 2231."""
    head = data.split(b"Content-Disposition: attachment;")[1].split(b"\r\nContent-")[0]
    value = head.replace(b"\r\n\t", b"").strip().decode("ascii")
    if value.startswith("filename*=utf-8''"):
        return urllib.parse.unquote(value.removeprefix("filename*=utf-8''"), errors="strict")
    value = value.removeprefix("filename=")
    return value[1:-1] if value.startswith('"') else value


FILE_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(FILE_NAMES)
@example(filename='""')  # Python reads it as an empty name; the header carries it whole
def test_any_file_name_round_trips_through_the_built_message(filename: str) -> None:
    data, part = built_attachment(filename)
    assert filename_written(data) == filename
    # get_filename() goes further: it strips whitespace, and a pair of quotes or angle
    # brackets around the whole name (email.utils.unquote), however the name was written.
    assert part.get_filename() == email.utils.unquote(filename).strip()
    part_head = data.split(b"\r\nContent-Type: application/pdf")[1].split(b"\r\n\r\n")[0]
    unfolded = (b"Content-Type: application/pdf" + part_head).replace(b"\r\n\t", b" ")
    # Exactly the three fields batchmail writes: no line break of the name made another.
    names = [line.split(b":")[0] for line in unfolded.split(b"\r\n")]
    assert names == [b"Content-Type", b"Content-Disposition", b"Content-Transfer-Encoding"]
    assert all(b"\r" not in line and b"\n" not in line for line in unfolded.split(b"\r\n"))
