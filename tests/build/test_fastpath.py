"""The message assembler and the pipelined SMTP path, against references: the standard
library's EmailMessage for the bytes, a real server for the conversation."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import pytest
from smtpserver import AnnouncementServer, Script, SmtpServerFactory
from support import HTML, PDF, PNG, TEXT, make_job, parse, recipients, report_of, run_cli

from batchmail.load.job import load_job
from batchmail.transport.contract import Envelope, Outcome, Route
from batchmail.transport.smtp import SmtpTransport

LONG_LINE = "word " * 300  # 1,500 characters on one line
CASES: dict[str, dict[str, Any]] = {
    "text and html, ascii": {},
    "non-ascii names and subject": {
        "recipients": [
            {
                "email": "jorg@example.com",
                "name": "Jörg Müller-Lüdenscheidt, Dr.",
                "team": "Ωmega ✓",
            }
        ],
        "subject": "Ünïcödé report for {{ name }}: 5 € ✓ " + "lang " * 20,
    },
    "long lines": {"recipients": [{"email": "a@example.com", "name": "A", "team": LONG_LINE}]},
    # RFC 5321 4.5.2: a line of one dot would end the message early unless it is doubled.
    "lines that start with a dot": {
        "recipients": [{"email": "a@example.com", "name": "A", "team": "core\n.\n..two\n.end"}],
        "template": {"html": None},
    },
    "text only": {"template": {"html": None}},
    "html only": {"template": {"text": None}},
    "several attachments": {"attachments": ["files/*"]},
    "no attachments": {"attachments": []},
}


def reference(person: dict[str, Any], folder: Path, settings: dict[str, Any]) -> EmailMessage:
    """What the standard library builds from the job's own sources, rendered independently."""
    plain, escaped = jinja2.Environment(), jinja2.Environment(autoescape=True)
    subject = settings.get("subject", "Report for {{ name }}")
    parts = {k for k in ("text", "html") if settings.get("template", {}).get(k, k) is not None}
    ref = EmailMessage()
    ref["From"] = Address("Reports", addr_spec="reports@example.com")
    ref["To"] = Address(person.get("name", ""), addr_spec=person["email"])
    ref["Subject"] = plain.from_string(subject).render(person)
    text = plain.from_string(TEXT).render(person) if "text" in parts else None
    html = escaped.from_string(HTML).render(person) if "html" in parts else None
    if text is not None:
        ref.set_content(text)
    if html is not None:
        if text is None:
            ref.set_content(html, subtype="html")
        else:
            ref.add_alternative(html, subtype="html")
    for path in _attached(folder, settings):
        maintype, subtype = _types(path).split("/")
        ref.add_attachment(path.read_bytes(), maintype, subtype, filename=path.name)
    return ref


def _attached(folder: Path, settings: dict[str, Any]) -> list[Path]:
    patterns = settings.get("attachments", ["files/report.pdf", "files/chart.bin"])
    return [p for pattern in patterns for p in sorted(folder.glob(pattern))]


def _types(path: Path) -> str:
    return {".pdf": "application/pdf", ".bin": "image/png", ".csv": "text/csv"}[path.suffix]


def shape(message: EmailMessage) -> Any:
    if message.is_multipart():
        return (message.get_content_type(), [shape(p) for p in message.iter_parts()])  # type: ignore[arg-type]
    return message.get_content_type()


def decoded(message: EmailMessage) -> list[Any]:
    out: list[Any] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content = part.get_content()
        if isinstance(content, str):
            content = content.replace("\r\n", "\n")
        out.append((part.get_content_type(), part.get_filename(), content))
    return out


@pytest.mark.parametrize("case", CASES)
def test_sent_bytes_match_the_standard_librarys_reference(
    case: str, tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = CASES[case]
    server = smtp_server()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "data.csv").write_text("a,b\n1,2\n")
    job = make_job(tmp_path, server.port, **settings)
    assert run_cli(capsys, "run", job).code == 0, case

    people = settings.get("recipients", recipients(3))
    assert len(server.messages) == len(people)
    for person, received in zip(people, server.messages, strict=True):
        raw = received.data
        lines = raw.split(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
        assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
        assert max(map(len, lines)) <= 998
        assert raw.isascii()
        sent = parse(raw)
        expected = reference(person, tmp_path, settings)
        assert shape(sent) == shape(expected)
        for name in ("From", "To", "Subject"):
            assert str(sent[name]) == str(expected[name])
        assert decoded(sent) == decoded(expected)
        for path in _attached(tmp_path, settings):
            attached = [p.get_payload(decode=True) for p in sent.iter_attachments()]
            assert path.read_bytes() in attached


def test_the_reference_check_can_fail() -> None:
    """The comparison above notices a dropped attachment and a changed body."""
    original = EmailMessage()
    original["To"] = Address("A", addr_spec="a@example.com")
    original.set_content("hello\n")
    original.add_attachment(PDF, "application", "pdf", filename="r.pdf")
    changed = EmailMessage()
    changed["To"] = original["To"]
    changed.set_content("hello!\n")
    assert shape(original) != shape(changed)
    changed.add_attachment(PNG, "image", "png", filename="r.pdf")
    assert decoded(original) != decoded(changed)


def test_pipelined_envelopes_with_a_refusal_in_the_middle(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(rcpt_replies={"user3@example.com": ["550 5.1.1 No such user"]})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(5))
    report = tmp_path / "report.json"
    assert run_cli(capsys, "run", job, "--report", report).code == 1

    assert [m.rcpt_tos[0] for m in server.messages] == [
        f"user{i}@example.com" for i in (1, 2, 4, 5)
    ]
    verbs = [verb for _, verb in server.commands]
    # The refused envelope still had its DATA pipelined behind RCPT; then RSET, then on.
    refused_at = [i for i, v in enumerate(verbs) if v == "RCPT"][2]
    assert verbs[refused_at - 1 : refused_at + 3] == ["MAIL", "RCPT", "DATA", "RSET"]
    assert verbs.count("MAIL") == 5
    entry = report_of(report)["recipients"][2]
    assert (entry["status"], entry["smtp_code"]) == ("failed", 550)


def test_pipelining_is_used_only_where_offered(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without PIPELINING, a refused RCPT is not followed by DATA at all."""
    script = Script(pipelining=False, rcpt_replies={"user2@example.com": ["550 5.1.1 No"]})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port)
    assert run_cli(capsys, "run", job).code == 1

    verbs = [verb for _, verb in server.commands]
    refused_at = [i for i, v in enumerate(verbs) if v == "RCPT"][1]
    assert verbs[refused_at + 1] == "RSET"
    assert len(server.messages) == 2
    assert re.search(rb"^Message-ID: <", server.messages[0].data, re.MULTILINE)


def test_each_message_carries_the_next_ones_envelope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 2920 3.1: the next MAIL, RCPT and DATA follow a message's final dot in the same
    group, so that each message costs one round trip: the server sees them before it
    answers the dot (the last message has none to carry)."""
    with AnnouncementServer() as server:
        job = make_job(tmp_path, server.port, recipients=recipients(5))
        assert run_cli(capsys, "run", job).code == 0

    assert server.announced == [True, True, True, True, False]
    assert [m.count(b"\r\nTo: User ") for m in server.messages] == [1] * 5
    assert [re.search(rb"To: User (\d)", m)[1] for m in server.messages] == [  # type: ignore[index]
        b"1", b"2", b"3", b"4", b"5",
    ]  # fmt: skip
    assert server.unterminated == []


def test_a_paced_job_announces_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server would hold an announced DATA open while the pace makes it wait."""
    with AnnouncementServer(wait=0.1) as server:
        job = make_job(tmp_path, server.port, recipients=recipients(3), rate={"per_second": 50})
        assert run_cli(capsys, "run", job).code == 0

    assert server.announced == [False, False, False]


def test_an_announced_message_that_does_not_follow_is_never_sent(tmp_path: Path) -> None:
    """When the announced message does not come next (a stop, a retry), its open DATA ends
    with the connection: no dot, so no message, and no QUIT sent as message text."""
    with AnnouncementServer() as server:
        settings = load_job(make_job(tmp_path, server.port)).smtp
        transport = SmtpTransport(settings, None)
        first = Envelope(Route(1, "a@example.com", "b@example.com"), b"Subject: 1\r\n\r\none\r\n")
        announced = Route(2, "a@example.com", "c@example.com")
        started = transport.start(first, announced)
        assert not isinstance(started, Outcome)
        assert started.finish().state == "sent"
        other = Envelope(Route(3, "a@example.com", "d@example.com"), b"Subject: 3\r\n\r\nthree\r\n")
        assert transport.send(other).state == "sent"
        transport.close()
        assert server.connections == 2
        server.stop()

    assert [m.split(b"\r\n")[0] for m in server.messages] == [b"Subject: 1", b"Subject: 3"]
    assert server.unterminated == [b""]
