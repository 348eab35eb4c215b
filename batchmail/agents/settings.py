"""send_email's settings: its SMTP server and its fixed From, read from the server's environment
into the records a job's `smtp` and `from` become."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from batchmail.agents.policy import ENV_SMTP_PASSWORD
from batchmail.agents.results import ToolFailure
from batchmail.load.addresses import AddressError, Mailbox, parse_mailbox
from batchmail.load.settings import DEFAULT_PORTS, SmtpSettings

ENV_SMTP_HOST = "BATCHMAIL_SMTP_HOST"
ENV_SMTP_PORT = "BATCHMAIL_SMTP_PORT"
ENV_SMTP_SECURITY = "BATCHMAIL_SMTP_SECURITY"
ENV_SMTP_USERNAME = "BATCHMAIL_SMTP_USERNAME"
ENV_FROM = "BATCHMAIL_FROM"
SMTP_TIMEOUT = 30.0


class SmtpConfig(Struct, frozen=True):
    settings: SmtpSettings  # the login, if any, named as a job names it: by its variables
    sender: Mailbox


def smtp_config(environ: Mapping[str, str]) -> SmtpConfig:
    """send_email's SMTP server and From, from the server's environment."""
    host = environ.get(ENV_SMTP_HOST, "").strip()
    if not host:
        raise ToolFailure(f"send_email is not configured: {ENV_SMTP_HOST} is not set")
    security = environ.get(ENV_SMTP_SECURITY, "").strip().lower() or "starttls"
    if security not in DEFAULT_PORTS:
        raise ToolFailure(f"{ENV_SMTP_SECURITY} is {security!r}: use starttls, tls or none")
    username = environ.get(ENV_SMTP_USERNAME, "")
    password = environ.get(ENV_SMTP_PASSWORD, "")
    if bool(username) != bool(password):
        raise ToolFailure(f"{ENV_SMTP_USERNAME} and {ENV_SMTP_PASSWORD} go together")
    if username and security == "none":
        raise ToolFailure(
            f"{ENV_SMTP_SECURITY}=none with a user name would send the password in plaintext: "
            "use starttls or tls"
        )
    settings = SmtpSettings(
        host,
        _port(environ, security),
        security,
        username_env=ENV_SMTP_USERNAME if username else None,
        password_env=ENV_SMTP_PASSWORD if username else None,
        timeout=SMTP_TIMEOUT,
    )
    return SmtpConfig(settings, fixed_sender(environ))


def _port(environ: Mapping[str, str], security: str) -> int:
    text = environ.get(ENV_SMTP_PORT, "").strip()
    if not text:
        return DEFAULT_PORTS[security]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ToolFailure(f"{ENV_SMTP_PORT} is {text!r}: not a port number")
    return int(text)


def fixed_sender(environ: Mapping[str, str], tool: str = "send_email") -> Mailbox:
    """The From of every message the tools write (BATCHMAIL_FROM), needing no SMTP settings."""
    text = environ.get(ENV_FROM, "").strip()
    if not text:
        raise ToolFailure(f"{tool} is not configured: {ENV_FROM} is not set")
    try:
        return parse_mailbox(text)
    except AddressError as exc:
        raise ToolFailure(f"{ENV_FROM}: {exc}") from None
