"""SMTP credentials: a user name and password from the environment variables the job names."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.load.settings import SmtpSettings


class Credentials(Struct, frozen=True):
    username: str
    password: str

    def __repr__(self) -> str:  # never show the password, even in a debugger or a traceback
        return f"Credentials(username={self.username!r}, password=***)"

    def prepare(self) -> None:
        """Called once the job is valid, before any session opens: a place to fetch tokens."""

    def shared(self) -> object:
        """What `prepare` got, for the sending processes (forked before it) to `adopt`."""
        return None

    def adopt(self, shared: object) -> None:
        """Take over what `prepare` got in the parent process."""

    def authenticate(self, conn: smtplib.SMTP) -> None:
        """AUTH on an open session; `oauth2.XOAuth2Credentials` overrides it with XOAUTH2."""
        conn.login(self.username, self.password)


def credentials_from_env(settings: SmtpSettings, environ: Mapping[str, str]) -> Credentials | None:
    """Read the credentials the job names; a missing variable is the user's to fix (exit 2)."""
    if not settings.username_env or not settings.password_env:
        return None
    missing = [n for n in (settings.username_env, settings.password_env) if not environ.get(n)]
    if missing:
        raise invalid(
            "smtp",
            f"environment variable {', '.join(missing)} is not set "
            "(smtp.username_env / smtp.password_env name it)",
        )
    return Credentials(environ[settings.username_env], environ[settings.password_env])
