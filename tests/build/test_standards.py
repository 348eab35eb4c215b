"""Deliverability and standards: DKIM, List-Unsubscribe, international addresses, XOAUTH2,
Markdown bodies. Everything is checked on the bytes a real SMTP server on 127.0.0.1 received.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import yaml
from dkimsupport import DOMAIN, SELECTOR, DkimKey, dkim_job, make_dkim_key
from smtpserver import Script, SmtpServerFactory
from support import PNG, make_job, parse, parse_utf8, recipients, report_of, run_cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SMTP_USERNAME", "SMTP_PASSWORD", "BATCHMAIL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def replace_in_job(job: Path, **settings: Any) -> Path:
    """Set top-level keys of a job file as given (make_job merges mappings instead)."""
    data = yaml.safe_load(job.read_text(encoding="utf-8"))
    data.update(settings)
    job.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return job


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key() -> DkimKey:
    return make_dkim_key()


def signed_fields(data: bytes) -> list[str]:
    signature = parse(data)["DKIM-Signature"]
    match = re.search(r"\bh=([^;]+)", re.sub(r"\s+", "", signature))
    assert match, signature
    return match.group(1).split(":")


def test_dkim_signs_a_text_only_message_that_verifies_as_received(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dkim_key: DkimKey,
) -> None:
    server = smtp_server()
    job = dkim_job(tmp_path, server.port, dkim_key, attachments=None)
    replace_in_job(job, template={"text": "templates/body.txt.j2"})
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert len(server.messages) == 3
    for received in server.messages:
        assert received.data.startswith(b"DKIM-Signature: ")
        assert parse(received.data).get_content_type() == "text/plain"
        assert dkim_key.verify(received.data)
        assert not dkim_key.verify(received.data.replace(b"Hello", b"Hullo"))
    fields = signed_fields(server.messages[0].data)
    assert fields.count("from") == 2  # signed once more than present: no From can be added
    assert {"to", "subject", "date", "message-id", "content-type"} <= set(fields)
    signature = parse(server.messages[0].data)["DKIM-Signature"]
    assert f"d={DOMAIN}" in signature
    assert f"s={SELECTOR}" in signature
    assert "c=relaxed/relaxed" in re.sub(r"\s+", "", signature)
    # The size the report gives is the size that was sent, signature included.
    sizes = [entry["size"] for entry in report_of(tmp_path / "report.json")["recipients"]]
    assert sizes == [len(m.data) for m in server.messages]


def test_dkim_covers_multipart_attachments_and_the_unsubscribe_fields(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dkim_key: DkimKey,
) -> None:
    server = smtp_server()
    unsubscribe = {
        "url": "https://lists.example.com/u?who={{ email | urlencode }}",
        "mailto": "unsubscribe+{{ team }}@example.org",
        "one_click": True,
    }
    job = dkim_job(tmp_path, server.port, dkim_key, unsubscribe=unsubscribe)
    assert run_cli(capsys, "run", job).code == 0

    for received in server.messages:
        message = parse(received.data)
        assert message.get_content_type() == "multipart/mixed"
        assert dkim_key.verify(received.data)
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed_fields(received.data))
    # A relay replacing the unsubscribe target breaks the signature (RFC 8058 4).
    first = server.messages[0].data
    assert not dkim_key.verify(first.replace(b"lists.example.com", b"evil.example.net"))


def test_dkim_signs_non_ascii_names_subjects_bodies_and_addresses(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dkim_key: DkimKey,
) -> None:
    server = smtp_server()  # advertises SMTPUTF8
    people = [
        {"email": "jörg@bücher.example", "name": "Jörg Müller", "team": "Ökonomie"},
        {"email": "zoë@example.com", "name": "Zoë 佐藤", "team": "café"},
    ]
    job = dkim_job(
        tmp_path,
        server.port,
        dkim_key,
        recipients=people,
        subject="Grüße für {{ name }} — Bericht",
        **{"from": "Berichte Ödön <reports@example.com>"},
    )
    result = run_cli(capsys, "run", job)

    assert result.code == 0, result.err
    assert [m.rcpt_tos for m in server.messages] == [["jörg@bücher.example"], ["zoë@example.com"]]
    for received in server.messages:
        assert "SMTPUTF8" in received.mail_options
        assert dkim_key.verify(received.data)
    message = parse(server.messages[0].data)
    assert message["Subject"] == "Grüße für Jörg Müller — Bericht"
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines() == ["Hello Jörg Müller of Ökonomie."]


def test_dkim_dry_run_writes_signed_previews_and_reruns_are_recognised(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dkim_key: DkimKey,
) -> None:
    server = smtp_server()
    job = dkim_job(tmp_path, server.port, dkim_key)
    out = tmp_path / "preview"
    assert run_cli(capsys, "run", job, "--dry-run", "--out", out).code == 0
    previews = sorted(out.glob("*.eml"))
    assert len(previews) == 3
    assert all(dkim_key.verify(p.read_bytes()) for p in previews)
    report = report_of(out / "report.json")
    assert [r["size"] for r in report["recipients"]] == [len(p.read_bytes()) for p in previews]

    assert run_cli(capsys, "run", job).code == 0
    # The signature changes with the time; the inputs did not, so a re-run sends nothing.
    again = run_cli(capsys, "run", job, "--report", tmp_path / "again.json")
    assert again.code == 0, again.err
    assert len(server.messages) == 3
    assert report_of(tmp_path / "again.json")["summary"]["skipped"] == 3


def test_dkim_key_from_an_environment_variable(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    dkim_key: DkimKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server()
    # A key pasted into a CI secret often arrives with CRLF line ends.
    monkeypatch.setenv("DKIM_KEY", dkim_key.private_pem.decode().replace("\n", "\r\n"))
    settings = {"domain": DOMAIN, "selector": SELECTOR, "private_key_env": "DKIM_KEY"}
    job = make_job(tmp_path, server.port, dkim=settings, recipients=recipients(1))
    assert run_cli(capsys, "run", job).code == 0
    assert dkim_key.verify(server.messages[0].data)


@pytest.mark.parametrize(
    ("dkim_settings", "env", "expected"),
    [
        (
            {"private_key_file": "keys/missing.pem"},
            {},
            r"job\.yaml:\d+: dkim\.private_key_file: cannot read the DKIM key .*missing\.pem",
        ),
        ({"private_key_env": "DKIM_KEY"}, {}, r"dkim\.private_key_env: .*DKIM_KEY is not set"),
        (
            {"private_key_env": "DKIM_KEY"},
            {"DKIM_KEY": "not a key"},
            r"dkim: the DKIM private key \$DKIM_KEY is not a PEM RSA key",
        ),
        (
            {"private_key_env": "DKIM_KEY", "private_key_file": "k.pem"},
            {"DKIM_KEY": "x"},
            "exactly one of private_key_file and private_key_env",
        ),
    ],
)
def test_dkim_key_problems_are_job_errors_and_send_nothing(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dkim_settings: dict[str, str],
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.delenv("DKIM_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = smtp_server()
    settings = {"domain": DOMAIN, "selector": SELECTOR, **dkim_settings}
    result = run_cli(capsys, "run", make_job(tmp_path, server.port, dkim=settings))
    assert result.code == 2
    assert re.search(expected, result.err), result.err
    assert "Traceback" not in result.err
    assert server.connections == 0


# --- List-Unsubscribe ------------------------------------------------------------------------


def test_list_unsubscribe_is_templated_per_recipient(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    unsubscribe = {
        "url": "https://lists.example.com/u/{{ id }}?e={{ email | urlencode }}",
        "mailto": "unsubscribe+{{ id }}@example.org",
        "one_click": True,
    }
    people = [{**r, "id": f"x{n}"} for n, r in enumerate(recipients(2), start=1)]
    job = make_job(tmp_path, server.port, recipients=people, unsubscribe=unsubscribe)
    assert run_cli(capsys, "run", job).code == 0

    first, second = (parse(m.data) for m in server.messages)
    assert first["List-Unsubscribe"] == (
        "<https://lists.example.com/u/x1?e=user1%40example.com>, "
        "<mailto:unsubscribe+x1@example.org>"
    )
    assert second["List-Unsubscribe"].startswith("<https://lists.example.com/u/x2?")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n <mailto:" in server.messages[0].data  # folded between the entries


def test_list_unsubscribe_mailto_only_has_no_one_click(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = make_job(
        tmp_path,
        server.port,
        recipients=recipients(1),
        unsubscribe={"mailto": "leave-{{ team }}@example.org"},
    )
    assert run_cli(capsys, "run", job).code == 0
    message = parse(server.messages[0].data)
    assert message["List-Unsubscribe"] == "<mailto:leave-core@example.org>"
    assert "List-Unsubscribe-Post" not in message


@pytest.mark.parametrize(
    ("unsubscribe", "people", "expected"),
    [
        (
            {"mailto": "u@example.org", "one_click": True},
            recipients(1),
            r"job\.yaml:\d+: unsubscribe: one_click needs url",
        ),
        (
            {"url": "http://lists.example.com/u"},
            recipients(1),
            r"job\.yaml:\d+: unsubscribe\.url: 'http://lists.example.com/u' is not an https URL"
            r".*recipient 1, user1@example\.com",
        ),
        (
            {"url": "https://lists.example.com/u?x={{ team }}"},
            [{"email": "bob@example.org", "name": "B", "team": "a\r\nBcc: evil@example.org"}],
            r"unsubscribe\.url: .* \(recipient 1, bob@example\.org\)",
        ),
        (
            {"url": "https://lists.example.com/{{ team }}"},
            [{"email": "bob@example.org", "name": "B", "team": "a>,<https://evil.example.net"}],
            r"list-unsubscribe: .*refused in a header \(recipient 1, bob@example\.org\)",
        ),
        (
            {"mailto": "{{ team }}@example.org"},
            [{"email": "bob@example.org", "name": "B", "team": "no body"}],
            r"unsubscribe\.mailto: 'no body@example\.org' is not a valid address",
        ),
        ({"one_click": False}, recipients(1), r"unsubscribe: give url, mailto or both"),
    ],
)
def test_unsubscribe_problems_are_job_errors_and_send_nothing(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    unsubscribe: dict[str, Any],
    people: list[dict[str, Any]],
    expected: str,
) -> None:
    server = smtp_server()
    job = make_job(tmp_path, server.port, recipients=people, unsubscribe=unsubscribe)
    result = run_cli(capsys, "run", job)
    assert result.code == 2
    assert re.search(expected, result.err), result.err
    assert server.connections == 0


# --- international addresses -----------------------------------------------------------------


def test_idn_domain_goes_out_as_punycode_without_smtputf8(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(script=Script(smtputf8=False))
    people = [{"email": "user@bücher.example", "name": "Jörg", "team": "core"}]
    job = make_job(tmp_path, server.port, recipients=people)
    result = run_cli(capsys, "run", job)

    assert result.code == 0, result.err
    (received,) = server.messages
    assert received.rcpt_tos == ["user@xn--bcher-kva.example"]
    assert "SMTPUTF8" not in received.mail_options
    assert received.data.isascii()
    assert parse(received.data)["To"].addresses[0].addr_spec == "user@xn--bcher-kva.example"


def test_non_ascii_local_part_travels_with_smtputf8(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [{"email": "jörg@example.com", "name": "Jörg", "team": "core"}]
    result = run_cli(capsys, "run", make_job(tmp_path, server.port, recipients=people))

    assert result.code == 0, result.err
    (received,) = server.messages
    assert received.rcpt_tos == ["jörg@example.com"]
    assert "SMTPUTF8" in received.mail_options
    # RFC 6532 3.2: the header carries the address as UTF-8, unencoded.
    assert re.search("\r\nTo: [^\r]* <jörg@example.com>\r\n".encode(), received.data)


@pytest.mark.parametrize("name", ["Bob", 'Bob "the" Builder, Jr.', "Zoë"])
def test_a_display_name_beside_a_non_ascii_local_part_travels_with_smtputf8(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    server = smtp_server()
    people = [{"email": "josé@example.com", "name": name, "team": "core"}]
    result = run_cli(capsys, "run", make_job(tmp_path, server.port, recipients=people))

    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    (received,) = server.messages
    assert received.rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in received.mail_options
    [to] = parse_utf8(received.data)["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "josé@example.com")


def test_non_ascii_local_part_fails_alone_where_smtputf8_is_missing(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(script=Script(smtputf8=False))
    people = [
        {"email": "anna@example.com", "name": "Anna", "team": "core"},
        {"email": "jörg@example.com", "name": "Jörg", "team": "core"},
        {"email": "user@bücher.example", "name": "Ute", "team": "core"},
    ]
    job = make_job(tmp_path, server.port, recipients=people)
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 1
    assert [m.rcpt_tos for m in server.messages] == [
        ["anna@example.com"],
        ["user@xn--bcher-kva.example"],
    ]
    entries = {r["email"]: r for r in report_of(tmp_path / "report.json")["recipients"]}
    assert entries["jörg@example.com"]["status"] == "failed"
    assert "SMTPUTF8" in entries["jörg@example.com"]["smtp_response"]
    assert entries["anna@example.com"]["status"] == "sent"
    assert entries["user@bücher.example"]["status"] == "sent"


# --- XOAUTH2 ---------------------------------------------------------------------------------

USER = "sender@example.com"
ACCESS = "canary-access-9b1f4e"  # values that must never appear in any output
REFRESH = "canary-refresh-4c7d21"
SECRET = "canary-secret-e83a90"
CLIENT = "batchmail-client"


@dataclass
class TokenEndpoint:
    """An OAuth 2.0 token endpoint on 127.0.0.1 that counts and records its requests."""

    reply: tuple[int, dict[str, Any]] = (200, {})
    requests: list[tuple[dict[str, list[str]], str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(
        reply=(200, {"access_token": ACCESS, "token_type": "Bearer", "expires_in": 3599})
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            endpoint.requests.append((form, self.headers.get("Authorization", "")))
            status, body = endpoint.reply
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def oauth_job(folder: Path, port: int, ca_file: Path, oauth2: dict[str, str]) -> Path:
    smtp = {
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "ca_file": str(ca_file),
        "auth": "xoauth2",
        "username_env": "SMTP_USERNAME",
        "oauth2": oauth2,
    }
    return make_job(folder, port, smtp=smtp, rate={"connections": 2})


def refresh_settings(endpoint: TokenEndpoint) -> dict[str, str]:
    return {
        "refresh_token_env": "OAUTH_REFRESH",
        "client_id_env": "OAUTH_CLIENT",
        "client_secret_env": "OAUTH_SECRET",
        "token_url": endpoint.url,
    }


@pytest.fixture
def oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", USER)
    monkeypatch.setenv("OAUTH_REFRESH", REFRESH)
    monkeypatch.setenv("OAUTH_CLIENT", CLIENT)
    monkeypatch.setenv("OAUTH_SECRET", SECRET)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in (ACCESS, REFRESH, SECRET):
            assert secret not in text


@pytest.mark.usefixtures("oauth_env")
def test_xoauth2_refreshes_one_token_and_authenticates_every_session(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    token_endpoint: TokenEndpoint,
) -> None:
    server = smtp_server("starttls", auth=(USER, ACCESS))
    job = oauth_job(tmp_path, server.port, ca_file, refresh_settings(token_endpoint))
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 0, result.err
    assert len(server.messages) == 3
    assert {m.auth_login for m in server.messages} == {USER}
    assert all(m.tls for m in server.messages)
    assert server.connections == 2  # two sessions, one token
    (form, authorization), *others = token_endpoint.requests
    assert others == []
    assert form == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
    assert base64.b64decode(authorization.removeprefix("Basic ")) == f"{CLIENT}:{SECRET}".encode()
    assert_no_secrets(result.out, result.err, (tmp_path / "report.json").read_text())


@pytest.mark.usefixtures("oauth_env")
def test_an_invalid_job_asks_the_token_endpoint_nothing(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    token_endpoint: TokenEndpoint,
) -> None:
    server = smtp_server("starttls", auth=(USER, ACCESS))
    job = oauth_job(tmp_path, server.port, ca_file, refresh_settings(token_endpoint))
    job.write_text(job.read_text().replace("Report for {{ name }}", "Report for {{ nobody }}"))
    result = run_cli(capsys, "run", job)

    assert result.code == 2
    assert "'nobody' is undefined" in result.err
    assert token_endpoint.requests == []
    assert server.connections == 0


def test_xoauth2_with_an_access_token_from_the_environment(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_USERNAME", USER)
    monkeypatch.setenv("OAUTH_ACCESS", ACCESS)
    server = smtp_server("starttls", auth=(USER, ACCESS))
    job = oauth_job(tmp_path, server.port, ca_file, {"access_token_env": "OAUTH_ACCESS"})
    result = run_cli(capsys, "run", job)
    assert result.code == 0, result.err
    assert {m.auth_login for m in server.messages} == {USER}


@pytest.mark.usefixtures("oauth_env")
def test_a_refused_token_is_exit_3_with_the_servers_reason_and_no_secret(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    token_endpoint: TokenEndpoint,
) -> None:
    server = smtp_server("starttls", auth=(USER, "the-token-the-server-wants"))
    job = oauth_job(tmp_path, server.port, ca_file, refresh_settings(token_endpoint))
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 3
    assert "535 5.7.8 Username and Password not accepted" in result.err
    assert "status 401" in result.err  # from the 334 challenge's JSON
    assert server.messages == []
    assert server.auth_attempts
    assert set(server.auth_attempts) == {USER}
    report = (tmp_path / "report.json").read_text()
    assert json.loads(report)["status"] == "connection_failed"
    assert_no_secrets(result.out, result.err, report)
    assert not server.errors


@pytest.mark.usefixtures("oauth_env")
def test_a_token_endpoint_refusal_is_exit_3_with_its_reason(
    tmp_path: Path,
    smtp_server: SmtpServerFactory,
    capsys: pytest.CaptureFixture[str],
    ca_file: Path,
    token_endpoint: TokenEndpoint,
) -> None:
    token_endpoint.reply = (
        400,
        {"error": "invalid_grant", "error_description": f"Token {REFRESH} has been revoked."},
    )
    server = smtp_server("starttls", auth=(USER, ACCESS))
    job = oauth_job(tmp_path, server.port, ca_file, refresh_settings(token_endpoint))
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")

    assert result.code == 3
    assert "400 invalid_grant: Token *** has been revoked." in result.err
    assert server.messages == []
    assert server.auth_attempts == []
    assert_no_secrets(result.out, result.err, (tmp_path / "report.json").read_text())


@pytest.mark.parametrize(
    ("smtp", "expected"),
    [
        (
            {"oauth2": {"access_token_env": "T"}},
            r"smtp\.oauth2: oauth2 is only used with auth: xoauth2",
        ),
        ({"auth": "xoauth2"}, r"smtp\.auth: auth: xoauth2 needs smtp\.oauth2"),
        (
            {"auth": "xoauth2", "oauth2": {"access_token_env": "T"}, "password_env": "P"},
            r"smtp\.password_env: .*uses a token, not a password",
        ),
        (
            {"auth": "xoauth2", "oauth2": {"refresh_token_env": "R", "token_url": "https://x"}},
            r"smtp\.oauth2: give either access_token_env, or refresh_token_env",
        ),
        (
            {
                "auth": "xoauth2",
                "oauth2": {
                    "refresh_token_env": "R",
                    "client_id_env": "C",
                    "token_url": "http://auth.example.com/token",
                },
            },
            r"smtp\.oauth2\.token_url: .*must be https \(http only for 127\.0\.0\.1",
        ),
    ],
)
def test_xoauth2_settings_are_checked_when_the_job_loads(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    smtp: dict[str, Any],
    expected: str,
) -> None:
    settings = {"username_env": "SMTP_USERNAME", "security": "starttls", **smtp}
    result = run_cli(capsys, "validate", make_job(tmp_path, 2525, smtp=settings))
    assert result.code == 2
    assert re.search(expected, result.err), result.err


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/t", "http://localhost/t", "http://[::1]/t"])
def test_http_token_url_is_allowed_for_loopback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    oauth2 = {"refresh_token_env": "R", "client_id_env": "C", "token_url": url}
    settings = {"username_env": "U", "auth": "xoauth2", "oauth2": oauth2, "security": "tls"}
    result = run_cli(capsys, "validate", make_job(tmp_path, 2525, smtp=settings))
    assert result.code == 0, result.err


# --- Markdown bodies -------------------------------------------------------------------------

GIF = (  # a 1x1 GIF
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
MARKDOWN = """\
# Report for {{ name }}

Hello **{{ name }}** of {{ team }}.

![Logo](images/logo.gif) ![again](images/logo.gif) ![remote](https://cdn.example.com/x.png)

![Chart](../files/chart.bin)
"""


def markdown_job(folder: Path, port: int, text: str = MARKDOWN, **settings: Any) -> Path:
    (folder / "templates" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "images" / "logo.gif").write_bytes(GIF)
    (folder / "templates" / "body.md").write_text(text, encoding="utf-8")
    template = {"markdown": "templates/body.md", "inline_images": True}
    return replace_in_job(make_job(folder, port, **settings), template=template)


def content_ids(related: EmailMessage) -> list[str]:
    return [str(part["Content-ID"]).strip("<>") for part in list(related.iter_parts())[1:]]


def test_markdown_renders_text_and_html_with_inline_images_in_related(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    job = markdown_job(tmp_path, server.port, recipients=recipients(2))
    result = run_cli(capsys, "run", job)
    assert result.code == 0, result.err

    message = parse(server.messages[0].data)
    body, _pdf, _png = message.iter_parts()  # attachments stay beside the body
    assert body.get_content_type() == "multipart/alternative"
    text, related = body.iter_parts()
    assert text.get_content_type() == "text/plain"
    markdown = text.get_content().replace("\r\n", "\n")
    assert markdown.startswith("# Report for User 1\n\nHello **User 1** of core.\n")
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "text/html"
    html, *images = related.iter_parts()
    assert html.get_content_type() == "text/html"
    markup = html.get_content()
    assert "<h1>Report for User 1</h1>" in markup
    assert "<strong>User 1</strong>" in markup
    assert 'src="https://cdn.example.com/x.png"' in markup  # remote images stay remote
    # One part per file, however often it is shown; every cid: points at a Content-ID.
    assert [i.get_content_type() for i in images] == ["image/gif", "image/png"]
    assert [i.get_content() for i in images] == [GIF, PNG]
    assert [i.get_content_disposition() for i in images] == ["inline", "inline"]
    cids = re.findall(r'src="cid:([^"]+)"', markup)
    assert len(cids) == 3
    assert set(cids) == set(content_ids(related))
    assert len(set(content_ids(related))) == 2


def test_markdown_does_not_let_recipient_data_become_html(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    people = [{"email": "bob@example.org", "name": "<script>x()</script>", "team": "core"}]
    job = markdown_job(tmp_path, server.port, text="Hi {{ name }}\n", recipients=people)
    assert run_cli(capsys, "run", job).code == 0
    html = parse(server.messages[0].data).get_body(("html",))
    assert html is not None
    markup = html.get_content()
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup


@pytest.mark.parametrize(
    ("markdown", "template", "expected"),
    [
        ("![x](images/none.png)\n", {}, r"template\.inline_images: image not found: .*none\.png"),
        ("![x](../../outside.png)\n", {}, r"image '\.\./\.\./outside\.png' resolves outside"),
        ("![x](/etc/hosts)\n", {}, r"write the path relative to the Markdown file"),
        ("hi\n", {"text": "templates/body.txt.j2"}, r"markdown makes both the text and the HTML"),
    ],
)
def test_markdown_problems_are_job_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    markdown: str,
    template: dict[str, str],
    expected: str,
) -> None:
    (tmp_path / "outside.png").write_bytes(PNG)
    folder = tmp_path / "job"
    job = markdown_job(folder, 2525, text=markdown)
    if template:
        replace_in_job(job, template={"markdown": "templates/body.md", **template})
    result = run_cli(capsys, "validate", job)
    assert result.code == 2
    assert re.search(expected, result.err), result.err


def test_inline_images_needs_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = {"text": "templates/body.txt.j2", "inline_images": True}
    job = replace_in_job(make_job(tmp_path, 2525), template=template)
    result = run_cli(capsys, "validate", job)
    assert result.code == 2
    assert "inline_images embeds the images of a Markdown body" in result.err


# --- SpamAssassin's UNRESOLVED_TEMPLATE ------------------------------------------------------

# Scores any message with a header matching this: an upper-case percent-encoding such as %C3%BC
# looks to it like a template placeholder (%FIRSTNAME) nobody filled in.
UNRESOLVED_TEMPLATE = re.compile(rb"%[A-Z][A-Z_-]")


def test_generated_headers_never_look_like_unresolved_templates(
    tmp_path: Path, smtp_server: SmtpServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    person = {"email": "zoë@bücher.example", "name": "Zoë Çelik", "team": "Ökonomie"}
    unsubscribe = {
        "url": "https://lists.example.com/u?e={{ email | urlencode }}&n={{ name | urlencode }}",
        "mailto": "{{ team }}+leave@example.org",
        "one_click": True,
    }
    job = make_job(tmp_path, server.port, recipients=[person], unsubscribe=unsubscribe)
    assert run_cli(capsys, "run", job).code == 0

    [received] = server.messages
    head = received.data.split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    assert not UNRESOLVED_TEMPLATE.search(head), head
    url, mailto = re.findall(r"<([^>]+)>", parse(received.data)["List-Unsubscribe"])
    query = parse_qs(url.split("?", 1)[1])
    assert query == {"e": ["zoë@bücher.example"], "n": ["Zoë Çelik"]}
    assert unquote(mailto) == "mailto:Ökonomie+leave@example.org"
