"""Building job folders and running the CLI in-process, for the delivery tests."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchmail.cli import main

REPO = Path(__file__).resolve().parent.parent
PDF = (REPO / "jobs" / "artifacts" / "build-summary.pdf").read_bytes()
PASSWORD = "canary-Pa55w0rd-7f3e9"  # a value that must never appear in any output


def png_bytes() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = png_bytes()

TEXT = "Hello {{ name }} of {{ team }}.\n"
HTML = "<p>Hello <b>{{ name }}</b> of {{ team }}.</p>\n"


def recipients(count: int) -> list[dict[str, Any]]:
    return [
        {"email": f"user{i}@example.com", "name": f"User {i}", "team": "core"}
        for i in range(1, count + 1)
    ]


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    """Write files under `root` (paths relative to it), as given: text as UTF-8, untranslated."""
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", newline="")


def write_job_file(
    root: Path, text: str, files: dict[str, str | bytes], name: str = "job.yaml"
) -> Path:
    """A job folder: the job file's text and the files it names; the job file's path."""
    write_files(root, {**files, name: text})
    return root / name


def make_job(folder: Path, port: int = 25, **settings: Any) -> Path:
    """A job folder with templates, a PDF and a PNG named `.bin`; `settings` override the job
    (a dict is merged into the default one; None removes a key, at either level)."""
    write_files(
        folder,
        {
            "templates/body.txt.j2": TEXT,
            "templates/body.html.j2": HTML,
            "files/report.pdf": PDF,
            "files/chart.bin": PNG,
        },
    )
    job: dict[str, Any] = {
        "version": 1,
        "from": "Reports <reports@example.com>",
        "subject": "Report for {{ name }}",
        "template": {"text": "templates/body.txt.j2", "html": "templates/body.html.j2"},
        "recipients": recipients(3),
        "attachments": ["files/report.pdf", "files/chart.bin"],
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5},
    }
    for key, value in settings.items():
        if value is None:
            job.pop(key, None)
        elif isinstance(value, dict) and isinstance(job.get(key), dict):
            merged = {**job[key], **value}
            job[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            job[key] = value
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Result:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def parse_utf8(data: bytes) -> EmailMessage:
    """A message whose headers may hold UTF-8 (RFC 6532): the bytes parser would read those as
    undecodable bytes, so the text is decoded first."""
    message = Parser(policy=policy.default).parsestr(data.decode("utf-8"))
    assert isinstance(message, EmailMessage)
    return message


def report_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the `occurrence`-th line of `text` that contains `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in the text"
    return hits[occurrence - 1]


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run the CLI in-process; a traceback is never an acceptable answer."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def dry_run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`batchmail run job.yaml --dry-run --out out` in the working directory."""
    return cli(capsys, "run", "job.yaml", "--dry-run", "--out", "out")


def eml_count(root: Path) -> int:
    return len(list((root / "out").glob("*.eml"))) if (root / "out").exists() else 0
