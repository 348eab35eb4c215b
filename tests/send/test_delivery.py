"""The core path against a real SMTP server on 127.0.0.1: what arrives, and what is refused."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from smtpserver import Script, SmtpServerFactory, Tarpit
from support import PASSWORD, PDF, PNG, make_job, parse, recipients, report_of, run_cli


@pytest.fixture
def smtp_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's credentials, in the variables it names: user `mailer`, the canary password."""
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_three_recipients_arrive_as_mixed_alternative_with_attachments(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [[f"user{i}@example.com"] for i in (1, 2, 3)]
    assert {m.mail_from for m in server.messages} == {"reports@example.com"}
    assert server.connections == 1  # one session reused for every message
    for received in server.messages:
        message = parse(received.data)
        assert message.get_content_type() == "multipart/mixed"
        body, pdf, png = message.iter_parts()
        assert body.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
        assert (pdf.get_content_type(), pdf.get_filename()) == ("application/pdf", "report.pdf")
        assert (png.get_content_type(), png.get_filename()) == ("image/png", "chart.bin")
        assert pdf.get_content() == PDF
        assert png.get_content() == PNG
        assert message["Date"]
        assert message["Message-ID"]
        assert message["MIME-Version"] == "1.0"
    first = parse(server.messages[0].data)
    assert first["To"] == "User 1 <user1@example.com>"
    assert first["Subject"] == "Report for User 1"
    report = report_of(tmp_path / "report.json")
    assert report["summary"]["sent"] == 3
    assert report["recipients"][0]["attachments"] == ["report.pdf", "chart.bin"]
    assert report["recipients"][0]["smtp_code"] == 250
    assert report["recipients"][0]["message_id"] == first["Message-ID"]
    assert "3 sent" in result.out


def test_crlf_in_a_name_is_refused_and_nothing_is_sent(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [*recipients(2), {"email": "bob@example.org", "name": "Bob\r\nBcc: evil@example.org"}]
    job = make_job(tmp_path, server.port, recipients=people)
    result = run_cli(capsys, "run", job)

    assert result.code == 2
    assert server.connections == 0
    assert re.search(
        r"job\.yaml:\d+: recipients\[2\]\.name: .*line break.*bob@example\.org", result.err
    )


def test_encoded_word_in_subject_adds_no_header(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """CVE-2024-6923: this Python's email package turns the payload into a real Bcc header."""
    server = smtp_server()
    payload = "x=?UTF-8?Q?=0A?=Bcc: evil@example.org"
    job = make_job(tmp_path, server.port, subject=payload, recipients=recipients(1))
    assert run_cli(capsys, "run", job).code == 0

    message = parse(server.messages[0].data)
    assert "Bcc" not in message
    assert message["Subject"] == payload
    assert b"\nBcc" not in server.messages[0].data
    assert server.messages[0].rcpt_tos == ["user1@example.com"]


def test_non_ascii_subject_and_names_are_encoded(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [{"email": "jorg@example.com", "name": "Jörg Müller, Jr.", "team": "Ωmega"}]
    job = make_job(tmp_path, server.port, recipients=people, subject="Bericht für {{ name }} ✓")
    assert run_cli(capsys, "run", job).code == 0

    raw = server.messages[0].data
    assert raw.isascii()
    message = parse(raw)
    assert message["Subject"] == "Bericht für Jörg Müller, Jr. ✓"
    assert message["To"].addresses[0].display_name == "Jörg Müller, Jr."
    text = message.get_body(("plain",)).get_content()
    assert text.replace("\r\n", "\n") == "Hello Jörg Müller, Jr. of Ωmega.\n"


INVALID_JOBS = {
    "unknown key": (
        {"smtp": {"prot": 25}},
        r"job\.yaml:\d+: smtp\.prot: unknown key \(did you mean 'port'\?\)",
    ),
    "wrong type": (
        {"rate": {"per_second": "fast"}},
        r"job\.yaml:\d+: rate\.per_second: 'fast' is not of type 'number'",
    ),
    "undefined variable": (
        {"subject": "Hi {{ nickname }}"},
        r"job\.yaml:\d+: 'nickname' is undefined \(recipient 1, user1@example\.com\)",
    ),
    "glob matches nothing": (
        {"attachments": ["files/*.zip"]},
        r"job\.yaml:\d+: attachments: no file matches 'files/\*\.zip'",
    ),
    "invalid address": (
        {"recipients": [{"email": "bob@"}]},
        r"job\.yaml:\d+: recipients\[0\]\.email: 'bob@' is not a valid address",
    ),
}


@pytest.mark.parametrize("case", INVALID_JOBS)
def test_invalid_jobs_send_nothing(
    case: str, tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    settings, error = INVALID_JOBS[case]
    job = make_job(tmp_path, server.port, **settings)
    result = run_cli(capsys, "run", job)

    assert result.code == 2
    assert server.connections == 0
    assert re.search(error, result.err), result.err
    assert "Traceback" not in result.err


def test_yaml_syntax_error_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port)
    job.write_text(job.read_text() + "rate: [unclosed\n")
    result = run_cli(capsys, "run", job)

    assert (result.code, server.connections) == (2, 0)
    assert re.search(r"job\.yaml:\d+: YAML syntax error", result.err)


def test_a_bad_row_among_many_stops_everything(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Validate everything first: the 40th recipient's error means the first 39 get nothing."""
    server = smtp_server()
    people = recipients(40)
    del people[39]["team"]
    job = make_job(tmp_path, server.port, recipients=people)
    result = run_cli(capsys, "run", job)

    assert (result.code, server.connections) == (2, 0)
    assert "body.txt.j2:1: 'team' is undefined (recipient 40, user40@example.com)" in result.err


def test_message_over_the_size_limit_is_refused_before_sending(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, limits={"max_message_bytes": 2000})
    result = run_cli(capsys, "run", job)

    assert (result.code, server.connections) == (2, 0)
    assert "over limits.max_message_bytes (2,000)" in result.err


@pytest.mark.parametrize("path", ["../../outside.txt", "/etc/hostname", "files/link-out"])
def test_templated_attachment_outside_base_dir_is_refused(
    path: str, tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    folder = tmp_path / "a" / "b"
    (tmp_path / "outside.txt").write_text("secret")
    people = [{"email": "eve@example.com", "name": "Eve", "team": "x", "file": path}]
    job = make_job(folder, server.port, recipients=people, attachments=[{"path": "{{ file }}"}])
    (folder / "files" / "link-out").symlink_to(tmp_path / "outside.txt")
    result = run_cli(capsys, "run", job)

    assert (result.code, server.connections) == (2, 0)
    assert "eve@example.com" in result.err
    assert re.search(r"absolute path|outside base_dir", result.err)


def test_templated_attachment_per_recipient(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [
        {"email": "a@example.com", "name": "A", "team": "core"},
        {"email": "b@example.com", "name": "B", "team": "ops"},
    ]
    job = make_job(
        tmp_path,
        server.port,
        recipients=people,
        attachments=[{"path": "files/{{ team }}.csv", "required": False}],
    )
    (tmp_path / "files" / "core.csv").write_text("a,b\n1,2\n")
    assert run_cli(capsys, "run", job).code == 0

    first, second = (parse(m.data) for m in server.messages)
    (part,) = first.iter_attachments()
    assert (part.get_content_type(), part.get_filename()) == ("text/csv", "core.csv")
    assert list(second.iter_attachments()) == []


def test_permanent_refusals_are_recorded_and_the_run_goes_on(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = "550 5.1.1 No such user"
    script = Script(rcpt_replies={"user3@example.com": [refused], "user7@example.com": [refused]})
    server = smtp_server(script=script)
    job = make_job(tmp_path, server.port, recipients=recipients(10))
    result = run_cli(capsys, "run", job, "--report", tmp_path / "r.json")

    assert result.code == 1
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        f"user{i}@example.com" for i in (1, 2, 4, 5, 6, 8, 9, 10)
    )
    failed = [r for r in report_of(tmp_path / "r.json")["recipients"] if r["status"] == "failed"]
    assert [(r["email"], r["smtp_code"], r["smtp_response"]) for r in failed] == [
        ("user3@example.com", 550, "5.1.1 No such user"),
        ("user7@example.com", 550, "5.1.1 No such user"),
    ]
    assert "user3@example.com: failed: 550 5.1.1 No such user" in result.err


def _tls_job(
    tmp_path: Path, port: int, security: str, people: int = 3, connections: int = 1, **smtp: object
) -> Path:
    """A job sending with TLS and AUTH to `people` recipients over `connections` sessions."""
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username_env": "SMTP_USERNAME",
        "password_env": "SMTP_PASSWORD",
        **smtp,
    }
    return make_job(
        tmp_path,
        port,
        smtp=settings,
        recipients=recipients(people),
        rate={"connections": connections},
    )


@pytest.mark.usefixtures("smtp_credentials")
def test_starttls_with_an_untrusted_certificate_sends_nothing(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    result = run_cli(capsys, "run", _tls_job(tmp_path, server.port, "starttls"))

    assert result.code == 3
    verbs = {verb for _, verb in server.commands}
    assert "STARTTLS" in verbs
    assert not verbs & {"AUTH", "MAIL"}
    assert "certificate not trusted" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.usefixtures("smtp_credentials")
def test_starttls_trusted_through_ssl_cert_file_delivers(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ca_file: Path,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    result = run_cli(capsys, "run", _tls_job(tmp_path, server.port, "starttls"))

    assert result.code == 0, result.err
    assert len(server.messages) == 3
    assert all(m.tls and m.auth_login == "mailer" for m in server.messages)


@pytest.mark.usefixtures("smtp_credentials")
@pytest.mark.parametrize(("people", "connections"), [(3, 1), (32, 4)])  # 4: two a process
def test_implicit_tls_with_the_jobs_ca_file_delivers(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    people: int,
    connections: int,
) -> None:
    server = smtp_server("tls", auth=("mailer", PASSWORD))
    job = _tls_job(tmp_path, server.port, "tls", people, connections, ca_file=str(ca_file))
    result = run_cli(capsys, "run", job)

    assert result.code == 0, result.err
    assert server.connections == connections
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        f"user{i}@example.com" for i in range(1, people + 1)
    )
    assert all(m.tls and m.auth_login == "mailer" for m in server.messages)


def test_starttls_not_offered_means_no_plaintext(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
) -> None:
    server = smtp_server("starttls", script=Script(advertise_starttls=False))
    job = make_job(tmp_path, server.port, smtp={"security": "starttls", "ca_file": str(ca_file)})
    result = run_cli(capsys, "run", job)

    assert result.code == 3
    assert "does not offer STARTTLS" in result.err
    assert "MAIL" not in {verb for _, verb in server.commands}


@pytest.mark.usefixtures("smtp_credentials")
def test_wrong_password_is_exit_3_and_never_printed(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
) -> None:
    server = smtp_server("starttls", auth=("mailer", "the-right-one"))
    job = _tls_job(tmp_path, server.port, "starttls", ca_file=str(ca_file))
    result = run_cli(capsys, "run", job, "--report", tmp_path / "r.json")

    assert result.code == 3
    assert "authentication failed: 535" in result.err
    assert "MAIL" not in {verb for _, verb in server.commands}
    assert PASSWORD not in result.out + result.err
    assert PASSWORD not in (tmp_path / "r.json").read_text()


@pytest.mark.usefixtures("smtp_credentials")
def test_the_password_appears_in_no_output(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
) -> None:
    script = Script(rcpt_replies={"user2@example.com": ["550 5.1.1 No such user"]})
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=script)
    job = _tls_job(tmp_path, server.port, "starttls", ca_file=str(ca_file))
    sent = run_cli(capsys, "run", job, "--report", tmp_path / "r.json")
    preview = run_cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "preview")
    checked = run_cli(capsys, "validate", job)

    assert (sent.code, preview.code, checked.code) == (1, 0, 0)
    for result in (sent, preview, checked):
        assert PASSWORD not in result.out + result.err
    secret = PASSWORD.encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".eml" for p in files)
    assert any("journal" in p.name for p in files)
    assert [p for p in files if secret in p.read_bytes()] == []
    assert all(secret not in m.data for m in server.messages)


@pytest.mark.usefixtures("smtp_credentials")
def test_auth_without_tls_needs_the_explicit_setting(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server(auth=("mailer", PASSWORD), auth_require_tls=False)
    refused = run_cli(capsys, "run", _tls_job(tmp_path, server.port, "none"))
    assert (refused.code, server.connections) == (2, 0)
    assert "plaintext" in refused.err

    allowed = run_cli(
        capsys, "run", _tls_job(tmp_path, server.port, "none", allow_insecure_auth=True)
    )
    assert allowed.code == 0, allowed.err
    assert [m.auth_login for m in server.messages] == ["mailer"] * 3


def test_missing_credentials_are_exit_2_before_connecting(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
) -> None:
    server = smtp_server("starttls")
    result = run_cli(capsys, "run", _tls_job(tmp_path, server.port, "starttls"))
    assert (result.code, server.connections) == (2, 0)
    assert "SMTP_USERNAME, SMTP_PASSWORD is not set" in result.err


def test_dry_run_eml_matches_the_sent_bytes_apart_from_date_and_message_id(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [{"email": "zoë@example.com", "name": "Zoë", "team": "ü"}, *recipients(2)]
    job = make_job(tmp_path, server.port, recipients=people)
    assert run_cli(capsys, "run", job, "--dry-run", "--out", tmp_path / "out").code == 0
    assert server.connections == 0
    assert run_cli(capsys, "run", job).code == 0

    def without_ids(data: bytes) -> bytes:
        return re.sub(rb"(?m)^(Date|Message-ID): [^\r]*\r\n", b"", data)

    previews = sorted((tmp_path / "out").glob("*.eml"))
    assert len(previews) == 3
    for preview, received in zip(previews, server.messages, strict=True):
        assert without_ids(preview.read_bytes()) == without_ids(received.data)
    assert parse(server.messages[0].data)["To"] == "Zoë <zoë@example.com>"
    assert "SMTPUTF8" in server.messages[0].mail_options


def test_a_server_that_never_greets_ends_within_the_timeout(
    tmp_path: Path, tarpit: Tarpit, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(tmp_path, tarpit.port, smtp={"timeout": 0.5})
    result = run_cli(capsys, "run", job)

    assert result.code == 3
    assert "timed out" in result.err
    assert "nothing was sent" in result.err


def test_the_report_goes_to_a_device_without_replacing_it(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    job = make_job(tmp_path, server.port)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(fifo.read_bytes()))
    reader.start()
    result = run_cli(capsys, "run", job, "--report", fifo)
    reader.join(5)

    assert result.code == 0
    assert fifo.is_fifo()
    assert json.loads(b"".join(chunks))["summary"]["sent"] == 3


def test_a_non_ascii_sender_travels_with_smtputf8(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, **{"from": "Jörg <jörg@example.com>"})
    result = run_cli(capsys, "run", job)

    assert result.code == 0, result.err
    assert {m.mail_from for m in server.messages} == {"jörg@example.com"}
    assert all("SMTPUTF8" in m.mail_options for m in server.messages)
    assert parse(server.messages[0].data)["From"] == "Jörg <jörg@example.com>"


def test_a_long_sender_domain_keeps_a_plain_message_id(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    domain = "mail.notifications.departments.example-university.example.org"
    job = make_job(tmp_path, server.port, **{"from": f"Bot <bot@{domain}>"})
    assert run_cli(capsys, "run", job).code == 0

    message_id = parse(server.messages[0].data)["Message-ID"]
    assert re.fullmatch(rf"<\d{{8}}T\d{{6}}Z-[0-9a-f]{{6}}\.1@{re.escape(domain)}>", message_id)
    assert b"=?" not in server.messages[0].data.split(b"\r\n\r\n")[0]
