"""`batchmail check`, its DNS half: SPF, DMARC and the DKIM key, asked of a private dnsmasq."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest
from dkimsupport import DOMAIN, SELECTOR, DkimKey, dkim_job, make_dkim_key
from dnsmasq import Dnsmasq, running_dnsmasq
from smtpserver import SmtpServerFactory
from support import PASSWORD, Result, make_job, recipients, run_cli

SPF = ("example.com", "v=spf1 ip4:127.0.0.1 -all")
DMARC = ("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")
KEY_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("BATCHMAIL_STATE_DIR", raising=False)
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return make_dkim_key()


@pytest.fixture(scope="module")
def other_key() -> DkimKey:
    return make_dkim_key()


class DnsFactory(Protocol):
    def __call__(self, *records: tuple[str, str], local: Sequence[str] = ...) -> Dnsmasq: ...


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[DnsFactory]:
    """Start private dnsmasq servers serving the records given; all are stopped at teardown."""
    with ExitStack() as running:

        def start(*records: tuple[str, str], local: Sequence[str] = (DOMAIN,)) -> Dnsmasq:
            folder = tmp_path / f"dns-{len(list(tmp_path.glob('dns-*')))}"
            return running.enter_context(running_dnsmasq(folder, records, local))

        yield start


def _key_record(key: DkimKey) -> tuple[str, str]:
    return KEY_NAME, key.txt_record.decode("ascii")


def _signing_job(tmp_path: Path, port: int, ca_file: Path, key: DkimKey) -> Path:
    smtp = {
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username_env": "SMTP_USERNAME",
        "password_env": "SMTP_PASSWORD",
        "ca_file": str(ca_file),
        "timeout": 2,
    }
    return dkim_job(tmp_path, port, key, smtp=smtp, recipients=recipients(2))


def _check(capsys: pytest.CaptureFixture[str], dns: str, job: Path, *more: str) -> Result:
    return run_cli(capsys, "check", job, "--dns", dns, *more)


def _statuses(out: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines()}


def _line(out: str, check: str) -> str:
    return next(line for line in out.splitlines() if line.split()[1] == f"{check}:")


def _no_secret(result: Result, key: DkimKey) -> None:
    seen = result.out + result.err
    body = b"".join(key.private_pem.splitlines()[1:-1]).decode("ascii")
    assert PASSWORD not in seen
    assert body[:40] not in seen
    assert "PRIVATE KEY" not in seen
    assert "Traceback" not in seen


def test_published_spf_dmarc_and_the_right_key_pass_with_exit_0(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
    key: DkimKey,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    dns = dns_server(SPF, DMARC, _key_record(key), ("example.com", "site-verification=abc"))
    result = _check(capsys, dns.address, _signing_job(tmp_path, server.port, ca_file, key))

    assert result.code == 0, result.out + result.err
    statuses = _statuses(result.out)
    assert set(statuses.values()) == {"ok"}
    assert {"connection", "tls", "login", "spf", "dmarc", "dkim"} <= set(statuses)
    assert _line(result.out, "spf") == "ok   spf: example.com: v=spf1 ip4:127.0.0.1 -all"
    dmarc = _line(result.out, "dmarc")
    assert "_dmarc.example.com: p=reject" in dmarc
    assert "From example.com aligns with DKIM d=example.com (adkim=r, relaxed)" in dmarc
    dkim = _line(result.out, "dkim")
    assert f"the key published at {KEY_NAME} matches the job's private key" in dkim
    assert "RSA, 2048 bits" in dkim
    assert server.messages == []
    _no_secret(result, key)


def test_a_different_published_key_fails_dkim_with_exit_1(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
    key: DkimKey,
    other_key: DkimKey,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    dns = dns_server(SPF, DMARC, _key_record(other_key))
    result = _check(capsys, dns.address, _signing_job(tmp_path, server.port, ca_file, key))

    assert result.code == 1
    statuses = _statuses(result.out)
    assert statuses["dkim"] == "fail"
    assert {statuses[c] for c in ("connection", "tls", "login", "spf", "dmarc")} == {"ok"}
    dkim = _line(result.out, "dkim")
    assert f"the DKIM key published at {KEY_NAME} is not the public half" in dkim
    assert "keys/dkim.pem" in dkim
    _no_secret(result, key)


def test_json_carries_the_dns_checks_as_the_smtp_ones(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
    key: DkimKey,
    other_key: DkimKey,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    dns = dns_server(SPF, _key_record(other_key))
    job = _signing_job(tmp_path, server.port, ca_file, key)
    lines = _check(capsys, dns.address, job)
    as_json = _check(capsys, dns.address, job, "--json")

    assert as_json.code == lines.code == 1
    checks = json.loads(as_json.out)
    assert all(set(c) == {"check", "status", "detail"} for c in checks)
    by_name = {c["check"]: c for c in checks}
    assert {name: c["status"] for name, c in by_name.items()} == _statuses(lines.out)
    assert by_name["spf"]["status"] == "ok"
    assert by_name["dmarc"]["status"] == "warn"
    assert by_name["dkim"]["status"] == "fail"
    assert by_name["dkim"]["detail"] in lines.out
    _no_secret(as_json, key)


def test_no_spf_record_fails_spf(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
) -> None:
    server = smtp_server()
    dns = dns_server(DMARC, ("example.com", "site-verification=abc"))
    result = _check(capsys, dns.address, make_job(tmp_path, server.port))

    assert result.code == 1
    assert _statuses(result.out)["spf"] == "fail"
    assert "no SPF record (TXT v=spf1) at example.com" in _line(result.out, "spf")


def test_a_domain_without_any_txt_record_fails_spf_and_warns_dmarc(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
) -> None:
    server = smtp_server()
    dns = dns_server(("other.example.com", "v=spf1 -all"))
    result = _check(capsys, dns.address, make_job(tmp_path, server.port))

    assert result.code == 1
    statuses = _statuses(result.out)
    assert statuses["spf"] == "fail"
    assert statuses["dmarc"] == "warn"
    assert "no DMARC record (TXT v=DMARC1) at _dmarc.example.com" in _line(result.out, "dmarc")
    assert statuses["dkim"] == "warn"
    assert "the job does not sign" in _line(result.out, "dkim")


def test_two_spf_records_fail_spf(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
) -> None:
    server = smtp_server()
    dns = dns_server(SPF, ("example.com", "v=spf1 include:_spf.example.net ~all"), DMARC)
    result = _check(capsys, dns.address, make_job(tmp_path, server.port))

    assert result.code == 1
    assert "2 SPF records at example.com" in _line(result.out, "spf")
    assert _statuses(result.out)["spf"] == "fail"


def test_dmarc_p_none_is_a_warning_and_exit_0(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
) -> None:
    server = smtp_server()
    dns = dns_server(SPF, ("_dmarc.example.com", "v=DMARC1; p=none"))
    result = _check(capsys, dns.address, make_job(tmp_path, server.port))

    assert result.code == 0, result.out
    assert _statuses(result.out)["dmarc"] == "warn"
    dmarc = _line(result.out, "dmarc")
    assert "p=none (receivers only report" in dmarc


@pytest.mark.parametrize(
    ("adkim", "status", "says"),
    [
        ("", "ok", "From example.com aligns with DKIM d=mail.example.com (adkim=r, relaxed)"),
        ("; adkim=s", "warn", "does not align with DKIM d=mail.example.com (adkim=s, strict)"),
    ],
)
def test_alignment_follows_adkim(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
    key: DkimKey,
    adkim: str,
    status: str,
    says: str,
) -> None:
    server = smtp_server()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dkim.pem").write_bytes(key.private_pem)
    dkim = {"domain": "mail.example.com", "selector": "s1", "private_key_file": "keys/dkim.pem"}
    job = make_job(tmp_path, server.port, dkim=dkim)
    dmarc = ("_dmarc.example.com", f"v=DMARC1; p=quarantine{adkim}")
    published = ("s1._domainkey.mail.example.com", key.txt_record.decode("ascii"))
    result = _check(capsys, dns_server(SPF, dmarc, published).address, job)

    assert _statuses(result.out)["dmarc"] == status
    assert says in _line(result.out, "dmarc")
    assert _statuses(result.out)["dkim"] == "ok"
    assert result.code == 0


def test_a_missing_key_record_fails_dkim(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
    key: DkimKey,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    dns = dns_server(SPF, DMARC)
    result = _check(capsys, dns.address, _signing_job(tmp_path, server.port, ca_file, key))

    assert result.code == 1
    dkim = _line(result.out, "dkim")
    assert dkim.startswith("fail dkim: no DKIM key")
    assert KEY_NAME in dkim
    assert "NXDOMAIN" in dkim


def test_a_resolver_that_refuses_gives_its_answer(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dns_server: DnsFactory,
) -> None:
    server = smtp_server()
    # example.com is neither a local domain nor forwarded anywhere.
    dns = dns_server(("example.net", "v=spf1 -all"), local=("example.net",))
    result = _check(capsys, dns.address, make_job(tmp_path, server.port))

    assert result.code == 1
    spf = _line(result.out, "spf")
    assert spf == f"fail spf: example.com: the lookup failed: {dns.address} answered REFUSED"
    assert _statuses(result.out)["dmarc"] == "fail"


def test_a_resolver_that_never_answers_fails_within_seconds(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    ca_file: Path,
    capsys: pytest.CaptureFixture[str],
    key: DkimKey,
) -> None:
    server = smtp_server("starttls", auth=("mailer", PASSWORD))
    job = _signing_job(tmp_path, server.port, ca_file, key)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = _check(capsys, address, job)
        elapsed = time.monotonic() - started

    assert elapsed < 8
    assert result.code == 1
    statuses = _statuses(result.out)
    assert statuses["login"] == "ok"
    assert {statuses[c] for c in ("spf", "dmarc", "dkim")} == {"fail"}
    assert f"{address} did not answer within 3 s" in _line(result.out, "spf")
    _no_secret(result, key)


@pytest.mark.parametrize("dns", ["dns.example.com", "127.0.0.1:http", "[::1", "1.2.3.4:70000"])
def test_a_resolver_that_is_not_an_address_is_refused_before_anything(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str], dns: str
) -> None:
    server = smtp_server()
    result = _check(capsys, dns, make_job(tmp_path, server.port))

    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(f"--dns: {dns!r}")
    assert len(result.err.splitlines()) == 1
    assert server.connections == 0
