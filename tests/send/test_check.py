"""`batchmail check`: a session as a run opens it, judged, and no message sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from dnsmasq import Dnsmasq, running_dnsmasq
from smtpserver import Script, SmtpServer, SmtpServerFactory
from support import PASSWORD, Result, make_job, recipients, run_cli

SMTP_CHECKS = ("connection", "tls", "login", "size", "pipelining", "smtputf8", "8bitmime")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    """The sender domain's SPF and DMARC; the jobs here do not sign, so no DKIM key."""
    records = [
        ("example.com", "v=spf1 ip4:127.0.0.1 -all"),
        ("_dmarc.example.com", "v=DMARC1; p=reject"),
    ]
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), records) as server:
        yield server


def _check(capsys: pytest.CaptureFixture[str], resolver: Dnsmasq, *argv: str | Path) -> Result:
    """`batchmail check` asking the private dnsmasq: no real DNS is ever asked."""
    return run_cli(capsys, "check", "--dns", resolver.address, *argv)


def _job(tmp_path: Path, port: int, security: str, ca_file: Path | None, **smtp: object) -> Path:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username_env": "SMTP_USERNAME",
        "password_env": "SMTP_PASSWORD",
        "timeout": 2,
        **smtp,
    }
    if ca_file is not None:
        settings["ca_file"] = str(ca_file)
    return make_job(tmp_path, port, smtp=settings, recipients=recipients(2))


def _verbs(server: SmtpServer) -> set[str]:
    return {verb for _, verb in server.commands}


def _statuses(out: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines()}


def _smtp_statuses(out: str) -> dict[str, str]:
    return {check: status for check, status in _statuses(out).items() if check in SMTP_CHECKS}


def test_starttls_and_auth_pass_and_nothing_is_sent(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", ca_file))

    assert result.code == 0, result.out + result.err
    statuses = _statuses(result.out)
    assert statuses == {
        "connection": "ok",
        "tls": "ok",
        "login": "ok",
        "size": "ok",
        "pipelining": "ok",
        "smtputf8": "ok",
        "8bitmime": "ok",
        "spf": "ok",
        "dmarc": "ok",
        "dkim": "warn",
    }
    tls = next(line for line in result.out.splitlines() if " tls:" in line)
    assert "TLSv1." in tls
    assert "name matches 127.0.0.1" in tls
    assert "expires" in tls
    assert "logged in with" in result.out
    assert {"STARTTLS", "AUTH", "QUIT"} <= _verbs(server)
    assert "MAIL" not in _verbs(server)
    assert "RCPT" not in _verbs(server)
    assert server.messages == []
    assert PASSWORD not in result.out + result.err


def test_json_holds_the_same_checks(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    job = _job(tmp_path, server.port, "starttls", ca_file)
    lines = _check(capsys, resolver, job)
    as_json = _check(capsys, resolver, job, "--json")

    assert as_json.code == lines.code == 0
    checks = json.loads(as_json.out)
    assert all(set(c) == {"check", "status", "detail"} for c in checks)
    assert {c["check"]: c["status"] for c in checks} == _statuses(lines.out)


def test_a_wrong_password_fails_login_with_exit_3_and_no_secret(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server("starttls", auth=("mailer", "the-right-one"))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", ca_file))

    assert result.code == 3
    assert _statuses(result.out)["login"] == "fail"
    assert "535" in result.out
    assert "app password" in result.out
    assert PASSWORD not in result.out + result.err
    assert "MAIL" not in _verbs(server)


@pytest.mark.parametrize(
    ("reply", "hint"),
    [
        (
            "534 5.7.9 Application-specific password required. Learn more at https://support",
            "Gmail wants an app password",
        ),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
            "for the Tenant.",
            "Microsoft 365 has SMTP AUTH turned off",
        ),
    ],
)
def test_provider_refusals_get_their_hint(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
    reply: str,
    hint: str,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=Script(auth_reply=reply))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", ca_file))

    assert result.code == 3
    login = next(line for line in result.out.splitlines() if " login:" in line)
    assert login.startswith("fail")
    assert reply[:9] in login
    assert hint in login
    assert PASSWORD not in result.out + result.err


def test_an_untrusted_certificate_fails_tls_before_any_auth(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    stranger = trustme.CA().issue_cert("127.0.0.1")
    server = smtp_server("starttls", auth=("mailer", PASSWORD), cert=stranger)
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", None))

    assert result.code == 3
    assert _smtp_statuses(result.out) == {"connection": "ok", "tls": "fail"}
    assert "certificate not trusted" in result.out
    assert "STARTTLS" in _verbs(server)
    assert not _verbs(server) & {"AUTH", "MAIL"}
    assert server.auth_attempts == []


def test_starttls_against_an_implicit_tls_port_hints_at_the_setting(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("tls", auth=("mailer", PASSWORD))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", ca_file, timeout=1))

    assert result.code == 3
    assert _smtp_statuses(result.out) == {"connection": "fail"}
    assert f"port {server.port}" in result.out
    assert "smtp.security: tls" in result.out
    assert server.auth_attempts == []


def test_tls_against_a_plain_port_hints_at_starttls(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "tls", ca_file, timeout=1))

    assert result.code == 3
    assert f"port {server.port}" in result.out
    assert "smtp.security: starttls" in result.out


def test_a_size_smaller_than_the_largest_message_fails_size_with_exit_1(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=Script(size=1000))
    result = _check(capsys, resolver, _job(tmp_path, server.port, "starttls", ca_file))

    assert result.code == 1
    statuses = _statuses(result.out)
    assert statuses["size"] == "fail"
    assert statuses["login"] == "ok"
    size = next(line for line in result.out.splitlines() if " size:" in line)
    assert "SIZE 1000" in size
    assert server.messages == []


def test_a_non_ascii_address_without_smtputf8_fails(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=Script(smtputf8=False))
    job = _job(tmp_path, server.port, "starttls", ca_file)
    text = job.read_text(encoding="utf-8").replace("user1@example.com", "jörg@example.com")
    job.write_text(text, encoding="utf-8")
    result = _check(capsys, resolver, job)

    assert result.code == 1
    assert _statuses(result.out)["smtputf8"] == "fail"


def test_a_non_ascii_cc_without_smtputf8_fails(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    """A run sends to the copies in the same envelope: they need SMTPUTF8 as the recipient does."""
    server = smtp_server("starttls", auth=("mailer", PASSWORD), script=Script(smtputf8=False))
    job = _job(tmp_path, server.port, "starttls", ca_file)
    job.write_text(job.read_text(encoding="utf-8") + "cc: jörg@example.com\n", encoding="utf-8")
    result = _check(capsys, resolver, job)

    assert result.code == 1
    assert _statuses(result.out)["smtputf8"] == "fail"


def test_an_invalid_job_is_exit_2_and_nothing_connects(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, subject="{{ nosuchfield }")
    result = _check(capsys, resolver, job)

    assert result.code == 2
    assert result.out == ""
    assert server.connections == 0


def test_without_credentials_login_is_none_and_plaintext_is_a_warning(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    resolver: Dnsmasq,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=recipients(2))
    result = _check(capsys, resolver, job)

    assert result.code == 0
    statuses = _statuses(result.out)
    assert statuses["tls"] == "warn"
    assert statuses["login"] == "ok"
    assert "none: the job gives no credentials" in result.out
    assert "MAIL" not in _verbs(server)
    assert server.messages == []
