"""`smtp.provider`: the loaded settings and the error lines. Only loading is tested: nothing here
connects to any provider."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from support import cli, line_of, write_job_file

from batchmail.errors import InvalidJobError
from batchmail.load.job import load_job
from batchmail.load.providers import PRESETS
from batchmail.load.settings import SmtpSettings

HEAD = """\
version: 1
from: "Bot <bot@example.com>"
subject: "Hello {{ name }}"
template:
  text: body.txt.j2
recipients:
  - email: alice@example.com
    name: Alice
smtp:
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(root: Path, smtp: str) -> tuple[Path, str]:
    text = HEAD + smtp
    return write_job_file(root, text, {"body.txt.j2": "Hello {{ name }}\n"}, "job.yaml"), text


def smtp_of(root: Path, smtp: str) -> SmtpSettings:
    path, _ = write(root, smtp)
    return load_job(path, environ={}).smtp


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidJobError) as info:
        load_job(path, environ={})
    return info.value.lines()


@pytest.mark.parametrize(
    ("provider", "host", "port", "security"),
    [
        ("gmail", "smtp.gmail.com", 587, "starttls"),
        ("outlook", "smtp-mail.outlook.com", 587, "starttls"),
        ("office365", "smtp.office365.com", 587, "starttls"),
        ("smtp2go", "mail.smtp2go.com", 587, "starttls"),
        ("sendgrid", "smtp.sendgrid.net", 587, "starttls"),
        ("mailgun", "smtp.mailgun.org", 587, "starttls"),
        ("postmark", "smtp.postmarkapp.com", 587, "starttls"),
        ("fastmail", "smtp.fastmail.com", 465, "tls"),
        ("zoho", "smtp.zoho.com", 465, "tls"),
    ],
)
def test_a_provider_fills_host_port_and_security(
    tmp_path: Path, provider: str, host: str, port: int, security: str
) -> None:
    smtp = smtp_of(tmp_path, f"  provider: {provider}\n")
    assert (smtp.host, smtp.port, smtp.security) == (host, port, security)


def test_ses_takes_its_host_from_the_region(tmp_path: Path) -> None:
    smtp = smtp_of(tmp_path, "  provider: ses\n  region: eu-west-1\n")
    assert (smtp.host, smtp.port, smtp.security) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        "starttls",
    )


def test_keys_given_explicitly_win(tmp_path: Path) -> None:
    smtp = smtp_of(tmp_path, "  provider: smtp2go\n  host: mail-eu.smtp2go.com\n  port: 2525\n")
    assert (smtp.host, smtp.port, smtp.security) == ("mail-eu.smtp2go.com", 2525, "starttls")


def test_a_security_given_without_a_port_takes_that_securitys_port(tmp_path: Path) -> None:
    smtp = smtp_of(tmp_path, "  provider: gmail\n  security: tls\n")
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.gmail.com", 465, "tls")
    smtp = smtp_of(tmp_path, "  provider: fastmail\n  security: starttls\n")
    assert (smtp.port, smtp.security) == (587, "starttls")


def test_the_other_smtp_keys_are_kept(tmp_path: Path) -> None:
    smtp = smtp_of(
        tmp_path,
        "  provider: gmail\n  username_env: GMAIL_USER\n  password_env: GMAIL_APP_PASSWORD\n",
    )
    assert (smtp.username_env, smtp.password_env) == ("GMAIL_USER", "GMAIL_APP_PASSWORD")


def test_an_unknown_provider_names_its_line_and_the_one_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write(tmp_path, "  provider: gmial\n")
    code, out, err = cli(capsys, "validate", "job.yaml")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"job.yaml:{line_of(text, 'provider')}: smtp.provider: 'gmial' is not one of "
        f"{', '.join(PRESETS)} (did you mean 'gmail'?)"
    ]


def test_an_unknown_provider_far_from_any_suggests_nothing(tmp_path: Path) -> None:
    path, text = write(tmp_path, "  provider: exchange\n")
    [line] = problems(path)
    assert line.startswith(f"job.yaml:{line_of(text, 'provider')}: smtp.provider: 'exchange' ")
    assert "did you mean" not in line


def test_ses_without_a_region_is_an_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = write(tmp_path, "  provider: ses\n")
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(f"job.yaml:{line_of(text, 'provider')}: smtp.region: ")
    assert "provider ses needs smtp.region" in line


def test_a_region_that_is_not_one_says_what_it_takes(tmp_path: Path) -> None:
    path, text = write(tmp_path, "  provider: ses\n  region: Ireland\n")
    assert problems(path) == [
        f"job.yaml:{line_of(text, 'region')}: smtp.region: 'Ireland' does not fit: "
        "The AWS region of the SES endpoint, such as eu-west-1 (provider: ses)."
    ]


def test_a_region_without_ses_is_refused(tmp_path: Path) -> None:
    path, text = write(tmp_path, "  provider: gmail\n  region: eu-west-1\n")
    assert problems(path) == [
        f"job.yaml:{line_of(text, 'region')}: smtp.region: region is used with provider: ses"
    ]


def test_without_a_provider_host_is_still_required(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "  port: 25\n")
    [line] = problems(path)
    assert "smtp: 'host' is a required property" in line


def test_the_schema_offers_exactly_the_presets() -> None:
    schema = json.loads(resources.files("batchmail").joinpath("job.schema.json").read_text())
    assert schema["properties"]["smtp"]["properties"]["provider"]["enum"] == list(PRESETS)
