"""Parsing and checking mailboxes: `Name <addr>` strings and bare addresses."""

from __future__ import annotations

import email.utils
import functools
import re

import idna
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from msgspec import Struct

# Characters that end a line somewhere (str.splitlines) plus NUL: none may reach a header.
_LINE_BREAKS = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


_NAME_ADDR = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>\s*$")
_BARE_ADDR = re.compile(r"^\s*(?P<addr>[^<>\s]+)\s*$")


class Mailbox(Struct, frozen=True):
    """The one model of an address: what was written, its forms, and how each use shows it."""

    address: str  # exactly as given, never "repaired"
    name: str = ""
    ascii_address: str = ""  # the address with an IDN domain in A-labels, when it has one

    @property
    def smtputf8(self) -> bool:
        """Whether the address can only travel with SMTPUTF8 (RFC 6531): a non-ASCII local part."""
        return not self.ascii_address.isascii()

    @property
    def envelope_address(self) -> str:
        """The form for MAIL FROM / RCPT TO: A-labels where that makes it ASCII (RFC 5890),
        else as written, to travel with SMTPUTF8."""
        return self.ascii_address if self.ascii_address.isascii() else self.address

    @property
    def unicode_address(self) -> str:
        """The address as people write it: an IDN domain in U-labels."""
        local, _, domain = self.ascii_address.rpartition("@")
        return f"{local}@{_unicode_domain(domain)}"

    @property
    def domain_key(self) -> str:
        """The domain, for matching: A-labels, lower case, so both forms of an IDN match."""
        return self.ascii_address.rpartition("@")[2].lower()

    @property
    def key(self) -> str:
        """The address, for matching: the local part as given, the domain as `domain_key`."""
        return f"{self.ascii_address.rpartition('@')[0]}@{self.domain_key}"

    @property
    def person_key(self) -> str:
        """The address, for matching people across lists (suppression): `key` with the local
        part case-folded. RFC 5321 2.4 lets a server tell `Ann@` from `ann@`; no provider makes
        two people of them, and the recipients' de-duplication already counts them as one."""
        local, _, domain = self.ascii_address.rpartition("@")
        return f"{local.casefold()}@{domain.lower()}"

    @property
    def shown(self) -> str:
        """`Name <address>` as people write it, for reports, logs and tool results; never
        encoded words (those belong in headers only)."""
        if not self.name:
            return self.unicode_address
        name = self.name
        if _NEEDS_QUOTES.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.unicode_address}>"


# RFC 5322 3.2.3 specials: a display name holding one is written as a quoted string.
_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')


@functools.lru_cache(maxsize=4096)
def _unicode_domain(domain: str) -> str:
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain


class AddressError(ValueError):
    pass


def has_line_break(value: str) -> bool:
    return not _LINE_BREAKS.isdisjoint(value)


def check_address(address: str) -> str:
    """Return the address's ASCII form (IDN domains as A-labels) or raise AddressError."""
    if has_line_break(address):
        raise AddressError(f"{address!r} contains a line break")
    local, _, domain = address.rpartition("@")
    if _PLAIN_LOCAL.match(local) and len(local) <= _MAX_LOCAL:
        # The common case, checked in two steps: a plain local part here, and the domain (the
        # costly IDNA checks) once per domain. A list of a million has a few hundred domains.
        ascii_domain = _ascii_domain(domain)
        if ascii_domain is not None and len(local) + 1 + len(ascii_domain) <= _MAX_ADDRESS:
            return f"{local}@{ascii_domain}"
    return f"{local}@{_validated(address).ascii_domain}"  # or the error, naming the address


# RFC 5322 3.2.3 dot-atom of ASCII atext, and the lengths of RFC 5321 4.5.3.1: addresses that
# email_validator accepts whatever its options, since only the domain is left to check.
_PLAIN_LOCAL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    try:
        return _validated(f"postmaster@{domain}").ascii_domain
    except AddressError:
        return None


def _validated(address: str) -> ValidatedEmail:
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AddressError(f"{address!r} is not a valid address: {exc}") from None


def mailbox(address: str, name: str | None = None, *, checked: bool = False) -> Mailbox:
    """A mailbox from an address and an optional display name.

    `checked`: the address passed `check_address` before (the validation pass), so an ASCII one
    is taken as it is; only an IDN domain still needs converting.
    """
    display = name or ""
    if has_line_break(display):
        raise AddressError(f"display name {display!r} contains a line break")
    if checked and address.isascii():
        return Mailbox(address, display, address)
    return Mailbox(address, display, check_address(address))


def parse_mailbox(text: str) -> Mailbox:
    """Parse `Name <addr>`, `"Name" <addr>` or `addr`: one mailbox (RFC 5322 3.4), as written.

    Stricter than `email.utils.getaddresses`, which glues stray words onto the address and
    closes an unclosed `<`: a sender must be exactly what the user typed.
    """
    if has_line_break(text):
        raise AddressError(f"{text!r} contains a line break")
    match = _NAME_ADDR.match(text) or _BARE_ADDR.match(text)
    if match is None:
        raise AddressError(f"{text!r} is not one mailbox like 'Name <user@example.com>'")
    name = email.utils.unquote(match.group("name").strip()) if "name" in match.groupdict() else ""
    address = match.group("addr")
    try:
        return mailbox(address, name)
    except AddressError as exc:
        if address == text.strip():
            raise
        raise AddressError(f"{text!r}: {exc}") from None


def parse_mailbox_list(text: str) -> list[Mailbox]:
    """Parse a comma-separated list of mailboxes (RFC 5322 3.4 address-list, without groups),
    each as `parse_mailbox` does; a comma inside a quoted display name or `<...>` separates
    nothing; empty items (a blank rendered value) are no mailbox."""
    return [parse_mailbox(item) for item in _list_items(text) if item.strip()]


def _list_items(text: str) -> list[str]:
    items, start, quoted, escaped, angled = [], 0, False, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char in "<>":
            angled = char == "<"
        elif char == "," and not angled:
            items.append(text[start:index])
            start = index + 1
    if quoted:
        raise AddressError(f"{text!r} has a display name with no closing quote")
    return [*items, text[start:]]
