"""`batchmail check`, its SMTP half: a session opened exactly as a run opens one, each step
judged (connection, TLS, login, the server's extensions against the job), then QUIT before
any MAIL command."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from typing import Literal

from msgspec import Struct

from batchmail.errors import EXIT_CONNECT, EXIT_FAILED, EXIT_OK, ConnectFailure
from batchmail.load.settings import SmtpSettings
from batchmail.transport.oauth2 import XOAuth2Credentials
from batchmail.transport.smtp import SmtpTransport

Status = Literal["ok", "warn", "fail"]
SESSION_CHECKS = frozenset({"connection", "tls", "login"})  # a fail there: exit 3
_LOGIN_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")  # the order smtplib.SMTP.login tries
_EXPIRY_WARNING_DAYS = 14


class Check(Struct, frozen=True):
    check: str
    status: Status
    detail: str


class JobNeeds(Struct, frozen=True):
    """What the job's messages ask of the server, from the validation pass."""

    largest: int  # bytes of the largest message
    smtputf8: bool  # a non-ASCII address (RFC 6531)
    eight_bit: bool  # a message with 8-bit bytes (RFC 6152)


def exit_code(checks: list[Check]) -> int:
    failed = {c.check for c in checks if c.status == "fail"}
    if failed & SESSION_CHECKS:
        return EXIT_CONNECT
    return EXIT_FAILED if failed else EXIT_OK


def probe(transport: SmtpTransport, needs: JobNeeds) -> list[Check]:
    """Connect, secure and log in as a run would, judge each step and the extensions; QUIT."""
    settings = transport.settings
    try:
        conn = transport.greet()
    except (OSError, smtplib.SMTPException) as exc:
        stage = "tls" if isinstance(exc, ssl.SSLError) else "connection"
        return [Check(stage, "fail", _failure(transport, exc) + _security_hint(settings, exc))]
    try:
        return _session(transport, conn, needs)
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


def _session(transport: SmtpTransport, conn: smtplib.SMTP, needs: JobNeeds) -> list[Check]:
    name = (conn.ehlo_resp or b"").split(b"\n")[0].decode("utf-8", "replace").strip()
    checks = [Check("connection", "ok", f"{transport.peer} answered EHLO as {name}")]
    if transport.settings.security == "starttls":
        try:
            transport.starttls(conn)
        except (OSError, smtplib.SMTPException) as exc:
            return [*checks, Check("tls", "fail", _failure(transport, exc))]
    checks.append(_tls(transport.settings, conn))
    try:
        transport.login(conn)
    except (OSError, smtplib.SMTPException) as exc:
        return [*checks, Check("login", "fail", _failure(transport, exc) + _login_hint(exc))]
    checks.append(Check("login", "ok", _mechanism(transport, conn)))
    return checks + extensions(conn, needs)


def _failure(transport: SmtpTransport, exc: OSError | smtplib.SMTPException) -> str:
    return str(exc) if isinstance(exc, ConnectFailure) else str(transport.failure(exc))


def _tls(settings: SmtpSettings, conn: smtplib.SMTP) -> Check:
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):
        return Check("tls", "warn", "smtp.security: none: the session is not encrypted")
    cert = sock.getpeercert() or {}
    issuer = dict(pair for rdn in cert.get("issuer", ()) for pair in rdn)  # type: ignore[misc]
    by = issuer.get("organizationName") or issuer.get("commonName") or "an unnamed issuer"
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"])) if "notAfter" in cert else None
    days = int((expires - time.time()) // 86400) if expires is not None else None
    until = time.strftime("%Y-%m-%d", time.gmtime(expires)) if expires is not None else "?"
    # The context verified the chain and the name (check_hostname) or the handshake failed.
    detail = (
        f"{sock.version()}, certificate issued by {by}, expires {until}"
        f" ({days} days), name matches {settings.host}"
    )
    soon = days is not None and days < _EXPIRY_WARNING_DAYS
    return Check("tls", "warn" if soon else "ok", detail)


def _mechanism(transport: SmtpTransport, conn: smtplib.SMTP) -> str:
    if transport.credentials is None:
        return "none: the job gives no credentials (smtp.username_env, smtp.password_env)"
    if isinstance(transport.credentials, XOAuth2Credentials):
        return "logged in with XOAUTH2"
    offered = (conn.esmtp_features.get("auth") or "").upper().split()
    used = next((m for m in _LOGIN_PREFERENCE if m in offered), "?")
    return f"logged in with {used}"


def extensions(conn: smtplib.SMTP, needs: JobNeeds) -> list[Check]:
    """The server's EHLO extensions against what the job's messages need."""
    return [
        _size(conn, needs),
        Check("pipelining", "ok", "offered (RFC 2920): one round trip per message")
        if conn.has_extn("pipelining")
        else Check("pipelining", "warn", "not offered: one round trip per command, slower"),
        _needed(conn, "smtputf8", needs.smtputf8, "a non-ASCII address (RFC 6531)"),
        _needed(conn, "8bitmime", needs.eight_bit, "8-bit message content (RFC 6152)"),
    ]


def _size(conn: smtplib.SMTP, needs: JobNeeds) -> Check:
    limit = conn.esmtp_features.get("size", "").strip()
    if not limit.isdigit() or int(limit) == 0:  # RFC 1870: 0 or no number, no fixed limit
        return Check("size", "ok", f"no limit announced; largest message {needs.largest} bytes")
    if needs.largest > int(limit):
        return Check(
            "size",
            "fail",
            f"SIZE {limit}: the server takes at most {limit} bytes, and the job's largest "
            f"message is {needs.largest} bytes",
        )
    return Check("size", "ok", f"SIZE {limit}; largest message {needs.largest} bytes")


def _needed(conn: smtplib.SMTP, name: str, needed: bool, what: str) -> Check:
    offered = bool(conn.has_extn(name))
    if offered:
        return Check(name, "ok", "offered" + (f", needed for {what}" if needed else ""))
    if needed:
        return Check(name, "fail", f"not offered, and the job needs it for {what}")
    return Check(name, "ok", "not offered; the job does not need it")


def _security_hint(settings: SmtpSettings, exc: BaseException) -> str:
    port = settings.port
    if settings.security == "starttls" and (port == 465 or _no_greeting(exc)):
        return (
            f"; hint: port {port} sent no SMTP greeting; a port that wants TLS from the first "
            "byte (as 465 does) needs smtp.security: tls"
        )
    verify = isinstance(exc, ssl.SSLCertVerificationError)
    if settings.security == "tls" and (
        port == 587 or (isinstance(exc, ssl.SSLError) and not verify)
    ):
        return (
            f"; hint: port {port} does not speak TLS from the first byte; a port that starts "
            "in plain SMTP (as 587 does) needs smtp.security: starttls"
        )
    return ""


def _no_greeting(exc: BaseException) -> bool:
    return isinstance(exc, (socket.timeout, smtplib.SMTPServerDisconnected, ssl.SSLError))


def _login_hint(exc: BaseException) -> str:
    if not isinstance(exc, smtplib.SMTPResponseException):
        return ""
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
    if exc.smtp_code == 534 and ("5.7.9" in text or "Application-specific" in text):
        return (
            "; hint: Gmail wants an app password (Google account, Security, App passwords) "
            "or OAuth (smtp.auth: xoauth2), not the account's password"
        )
    if "5.7.139" in text or "SmtpClientAuthentication" in text:
        return (
            "; hint: Microsoft 365 has SMTP AUTH turned off for this mailbox or tenant; an "
            "admin turns on Authenticated SMTP for the mailbox, or use OAuth (smtp.auth: xoauth2)"
        )
    if exc.smtp_code == 535:
        return (
            "; hint: the user name or password is wrong; a provider with two-step login "
            "wants an app password"
        )
    return ""
