"""OAuth 2.0 for SMTP: the refresh grant (RFC 6749 6) and the XOAUTH2 SASL mechanism.

XOAUTH2 is specified by Google and Microsoft rather than an RFC:
https://developers.google.com/gmail/imap/xoauth2-protocol
"""

from __future__ import annotations

import base64
import binascii
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlencode, urlsplit

from batchmail.errors import ConnectFailure, invalid
from batchmail.load.settings import OAuth2Settings, SmtpSettings
from batchmail.transport.credentials import Credentials, credentials_from_env

if TYPE_CHECKING:
    import urllib.request

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MAX_RESPONSE = 1 << 20
_EXPIRY_MARGIN = 60.0  # seconds: refresh a token this long before the endpoint says it expires


def credentials_for(settings: SmtpSettings, environ: Mapping[str, str]) -> Credentials | None:
    """The job's credentials: a password, or an XOAUTH2 token source (`smtp.auth`)."""
    if settings.auth != "xoauth2" or settings.oauth2 is None or not settings.username_env:
        return credentials_from_env(settings, environ)
    username = _env(environ, settings.username_env, "smtp.username_env")
    return XOAuth2Credentials(username, "", TokenSource(settings.oauth2, environ, settings.timeout))


def _env(environ: Mapping[str, str], name: str, key: str) -> str:
    value = environ.get(name)
    if not value:
        raise invalid("smtp", f"environment variable {name} is not set ({key} names it)")
    return value


class XOAuth2Credentials(Credentials, frozen=True):
    tokens: TokenSource

    def prepare(self) -> None:
        # Before sending starts: sessions opened later, in any thread or forked process, then
        # share this one token instead of each asking the endpoint.
        self.tokens.prefetch()

    def shared(self) -> object:
        return self.tokens.shared()

    def adopt(self, shared: object) -> None:
        self.tokens.adopt(shared)

    def authenticate(self, conn: smtplib.SMTP) -> None:
        offered = conn.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise ConnectFailure(
                f"the server does not offer AUTH XOAUTH2 (it offers: {' '.join(offered)})"
            )
        authenticate_xoauth2(conn, self.username, self.tokens.token())


def xoauth2_response(user: str, token: str) -> str:
    """The base64 initial client response: `user=U ^A auth=Bearer T ^A ^A`."""
    raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def authenticate_xoauth2(conn: smtplib.SMTP, user: str, token: str) -> None:
    """AUTH XOAUTH2 with an initial response (RFC 4954 4); raises SMTPAuthenticationError."""
    code, reply = conn.docmd("AUTH", "XOAUTH2 " + xoauth2_response(user, token))
    if code == 334:
        # A refused token gets a 334 carrying a JSON error; the client must answer it with an
        # empty line, and only then does the server send the 535.
        detail = _challenge_detail(reply)
        code, reply = conn.docmd("")
        raise smtplib.SMTPAuthenticationError(code, reply + detail.encode("utf-8"))
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _challenge_detail(reply: bytes) -> str:
    try:
        error = json.loads(base64.b64decode(reply.strip(), validate=True))
    except (ValueError, binascii.Error):
        return ""
    if not isinstance(error, dict):
        return ""
    shown = ", ".join(f"{k} {v}" for k, v in error.items() if k in ("status", "schemes", "scope"))
    return f" ({shown})" if shown else ""


class TokenSource:
    """One bearer token for the run, shared by every connection, fetched when first needed."""

    def __init__(self, settings: OAuth2Settings, environ: Mapping[str, str], timeout: float):
        self.settings = settings
        self.timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = float("inf")
        self._failure: ConnectFailure | None = None
        if settings.access_token_env:
            self._token = _env(environ, settings.access_token_env, "smtp.oauth2.access_token_env")
            self._refresh_token = ""
            self._client_id = ""
            self._client_secret = ""
            return
        self._refresh_token = _env(
            environ, str(settings.refresh_token_env), "smtp.oauth2.refresh_token_env"
        )
        self._client_id = _env(environ, str(settings.client_id_env), "smtp.oauth2.client_id_env")
        self._client_secret = (
            _env(environ, settings.client_secret_env, "smtp.oauth2.client_secret_env")
            if settings.client_secret_env
            else ""
        )

    def __repr__(self) -> str:
        return f"TokenSource(token_url={self.settings.token_url!r})"

    def prefetch(self) -> None:
        """Get the token now; a refusal is kept, to be raised when a session needs the token."""
        try:
            self.token()
        except ConnectFailure as failure:
            self._failure = failure

    def shared(self) -> tuple[str | None, float, ConnectFailure | None]:
        """The token (or the refusal) as prefetched, for another process to adopt."""
        with self._lock:
            return self._token, self._expires, self._failure

    def adopt(self, shared: object) -> None:
        if isinstance(shared, tuple):  # time.monotonic() is the same clock in every process
            self._token, self._expires, self._failure = shared

    def token(self) -> str:
        """The access token; raises ConnectFailure when the token endpoint refuses."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = self._refresh()
                self._expires = time.monotonic() + max(0.0, lifetime - _EXPIRY_MARGIN)
            return self._token

    def _refresh(self) -> tuple[str, float]:
        import urllib.error  # noqa: PLC0415 - with urllib.request: only XOAUTH2 jobs need them

        url = str(self.settings.token_url)
        try:
            body = self._post(url)
        except urllib.error.HTTPError as exc:
            reason = self._redact(_error_reason(exc.read(_MAX_RESPONSE)) or str(exc.reason))
            raise ConnectFailure(
                f"OAuth2 token endpoint {url} refused the refresh: {exc.code} {reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = str(exc.reason if isinstance(exc, urllib.error.URLError) else exc)
            raise ConnectFailure(
                f"OAuth2 token endpoint {url}: cannot connect: {self._redact(reason)}"
            ) from None
        return self._parse(url, body)

    def _post(self, url: str) -> bytes:
        # RFC 6749 6: the refresh grant, form-encoded; 2.3.1: the client authenticates with
        # HTTP Basic (id and secret form-encoded first), or as a public client by its id.
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        headers = {"Accept": "application/json"}
        if self._client_secret:
            pair = f"{quote_plus(self._client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self._client_id
        import urllib.request  # noqa: PLC0415 - see _refresh

        # job.load allowed only https, or http to this machine.
        request = urllib.request.Request(  # noqa: S310
            url, data=urlencode(form).encode("ascii"), headers=headers, method="POST"
        )
        with _opener(url).open(request, timeout=self.timeout) as response:
            data: bytes = response.read(_MAX_RESPONSE)
            return data

    def _parse(self, url: str, body: bytes) -> tuple[str, float]:
        try:
            reply: Any = json.loads(body)
        except ValueError:
            reply = None
        token = reply.get("access_token") if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token:
            raise ConnectFailure(f"OAuth2 token endpoint {url} answered without an access_token")
        lifetime = str(reply.get("expires_in", ""))
        return token, float(lifetime) if lifetime.isdigit() else float("inf")

    def _redact(self, text: str) -> str:
        """An endpoint may echo what it was sent; no secret reaches a message."""
        for secret in (self._refresh_token, self._client_secret, self._token):
            if secret:
                text = text.replace(secret, "***")
        return " ".join(text.split())


def _opener(url: str) -> urllib.request.OpenerDirector:
    import urllib.request  # noqa: PLC0415 - see TokenSource._refresh

    if urlsplit(url).hostname in _LOOPBACK:
        # A proxy from the environment must not carry a loopback request off this machine.
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    context = ssl.create_default_context()
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def _error_reason(body: bytes) -> str:
    """RFC 6749 5.2: `error` and `error_description` of a JSON error response."""
    try:
        reply: Any = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if not isinstance(reply, dict):
        return ""
    parts = [str(reply[k]) for k in ("error", "error_description") if reply.get(k)]
    return ": ".join(parts)
