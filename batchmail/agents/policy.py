"""The MCP server's safety gates: who may be mailed, how many messages, which files, which secrets.

Everything here comes from the server's environment, never from the client: an agent can ask for
anything, and these decide what actually happens.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from msgspec import Struct, field

from batchmail.load.addresses import AddressError, Mailbox, mailbox
from batchmail.load.recipients import Recipient

ENV_ALLOW = "BATCHMAIL_MCP_ALLOW"
ENV_MAX_MESSAGES = "BATCHMAIL_MCP_MAX_MESSAGES"
ENV_ROOT = "BATCHMAIL_MCP_ROOT"
ENV_CONFIRM = "BATCHMAIL_MCP_CONFIRM"
CONFIRM_ELICIT = "elicit"
ENV_SMTP_PASSWORD = "BATCHMAIL_SMTP_PASSWORD"  # noqa: S105 (a name, not a password)
DEFAULT_MAX_MESSAGES = 20
REDACTED = "[redacted]"
# Variables whose values are treated as secrets: never shown, never put in a message.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words
_MIN_GUESSED_SECRET_LENGTH = 8  # for a variable that is a secret by its name only (`..._TOKEN`)


class PolicyError(Exception):
    """A request the server's policy refuses; the message is one line meant for the agent."""


class Allowlist(Struct, frozen=True):
    """Addresses and `@domain`s that may be mailed, compared case-insensitively, an IDN domain
    in either form (entries and mailboxes are compared by `Mailbox.key` and `domain_key`).

    `@example.com` covers addresses at exactly that domain, not its subdomains. Empty: nobody.
    """

    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        addresses: set[str] = set()
        domains: set[str] = set()
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry.startswith("@") and len(entry) > 1 and "@" not in entry[1:]:
                domains.add(_entry(raw, f"postmaster{entry}").domain_key)
            elif "@" in entry.strip("@"):
                addresses.add(_entry(raw, entry).key)
            else:
                raise PolicyError(
                    f"{ENV_ALLOW}: {raw.strip()!r} is neither an address nor an @domain"
                )
        return cls(frozenset(addresses), frozenset(domains))

    def allows(self, box: Mailbox) -> bool:
        return box.domain_key in self.domains or box.key.lower() in self.addresses

    def refused(self, boxes: Iterable[Mailbox]) -> list[str]:
        """The addresses among `boxes` that may not be mailed, in order."""
        return [box.address for box in boxes if not self.allows(box)]

    def describe(self) -> str:
        entries = sorted(self.addresses) + sorted(f"@{d}" for d in self.domains)
        return ", ".join(entries) if entries else "nobody"


def _entry(raw: str, address: str) -> Mailbox:
    try:
        return mailbox(address)
    except AddressError as exc:
        raise PolicyError(f"{ENV_ALLOW}: {raw.strip()!r}: {exc}") from None


class Quota:
    """The messages this server process may still send; safe to use from several threads."""

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        with self._lock:
            return self.limit - self._used

    def reserve(self, count: int) -> None:
        """Take `count` messages from the quota, or refuse without taking any."""
        with self._lock:
            self._fits(count)
            self._used += count

    def check(self, count: int) -> None:
        """Refuse if `count` messages do not fit now; take nothing."""
        with self._lock:
            self._fits(count)

    def _fits(self, count: int) -> None:
        left = self.limit - self._used
        if count > left:
            raise PolicyError(
                f"{count} message{'s' if count != 1 else ''} would exceed the cap of this "
                f"server ({ENV_MAX_MESSAGES}={self.limit}, {left} left); nothing was sent"
            )

    def release(self, count: int) -> None:
        """Give back messages reserved but not sent."""
        with self._lock:
            self._used = max(0, self._used - max(0, count))


class Delivered(Protocol):
    """A run's event, as the guard sees it."""

    @property
    def recipient(self) -> Recipient: ...


class RunGuard(Struct):
    """Watches a run's deliveries; stops it if it strays beyond what was checked beforehand
    (inputs changed between the server's check and the run's own validation)."""

    allow: Allowlist
    budget: int
    stop: threading.Event = field(default_factory=threading.Event)
    seen: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: Delivered) -> None:
        with self.lock:
            self.seen.add(event.recipient.seq)
            if len(self.seen) > self.budget or not self.allow.allows(event.recipient.mailbox):
                self.stop.set()


class Root(Struct, frozen=True):
    """The folder that job files, report files and attachments must be inside (after realpath)."""

    path: Path

    @classmethod
    def at(cls, folder: str | os.PathLike[str]) -> Root:
        path = Path(os.path.realpath(folder))
        if not path.is_dir():
            raise PolicyError(f"{ENV_ROOT}: {folder} is not a folder")
        return cls(path)

    def resolve(self, given: str | os.PathLike[str], what: str) -> Path:
        """`given` (relative to the root, or absolute) as a real path inside the root."""
        text = os.fspath(given)
        if not text.strip():
            raise PolicyError(f"the {what} path is empty")
        if "\x00" in text:
            raise PolicyError(f"the {what} path contains a NUL character")
        return self.check(self.path / text, what, shown=text)

    def check(self, path: Path, what: str, shown: str | None = None) -> Path:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.path):
            raise PolicyError(
                f"the {what} {shown or str(path)!r} is outside the server's root "
                f"({ENV_ROOT}); refused"
            )
        return real


class Redactor:
    """Replaces every known secret value in text and in JSON-like data."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        for secret in secrets:
            self.add(secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        guessed = [
            value
            for name, value in environ.items()
            if _SECRET_NAME.search(name) and len(value) >= _MIN_GUESSED_SECRET_LENGTH
        ]
        return cls([environ.get(ENV_SMTP_PASSWORD, ""), *guessed])

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            with self._lock:
                self._secrets.add(secret)

    @property
    def secrets(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets, key=len, reverse=True)

    def found_in(self, *texts: str | None) -> bool:
        secrets = self.secrets
        return any(text and any(s in text for s in secrets) for text in texts)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class Policy(Struct, frozen=True):
    allow: Allowlist
    quota: Quota
    root: Root
    redactor: Redactor = field(default_factory=Redactor)
    ask: bool = False  # ask the person through MCP elicitation before anything is sent

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Policy:
        """Read the policy; a malformed setting is refused at start, not at the first send."""
        return cls(
            allow=Allowlist.parse(environ.get(ENV_ALLOW, "")),
            quota=Quota(_max_messages(environ.get(ENV_MAX_MESSAGES, ""))),
            root=Root.at(environ.get(ENV_ROOT) or os.getcwd()),
            redactor=Redactor.from_env(environ),
            ask=_confirm(environ.get(ENV_CONFIRM, "")),
        )


def _confirm(text: str) -> bool:
    """`BATCHMAIL_MCP_CONFIRM`: unset (the gates alone) or `elicit` (the gates, then a person)."""
    value = text.strip().lower()
    if value not in {"", CONFIRM_ELICIT}:
        raise PolicyError(
            f"{ENV_CONFIRM}: {text.strip()!r} is not a known mode: leave it unset or set it "
            f"to {CONFIRM_ELICIT!r}"
        )
    return value == CONFIRM_ELICIT


def _max_messages(text: str) -> int:
    if not text.strip():
        return DEFAULT_MAX_MESSAGES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise PolicyError(f"{ENV_MAX_MESSAGES}: {text!r} is not a whole number of 0 or more")
    return value
