"""`batchmail check`'s DNS lookups (dnspython): TXT records through the resolver `--dns` names
or the system's, each answer given as its texts or the reason there are none."""

from __future__ import annotations

import ipaddress
from typing import Literal

import dns.exception
import dns.name
import dns.rdtypes.ANY.TXT
import dns.resolver
from msgspec import Struct

from batchmail.errors import invalid

TIMEOUT = 3.0  # seconds per lookup, every try included, so that check never hangs
Found = Literal["found", "absent", "failed"]
_USAGE = "give an IP address, with a port if not 53: 127.0.0.1, 127.0.0.1:5353, ::1, [::1]:5353"


class TxtAnswer(Struct, frozen=True):
    name: str
    found: Found  # absent: the name or its TXT records do not exist; failed: no answer
    texts: tuple[str, ...] = ()  # each record's strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)
    reason: str = ""  # why there are no texts


def resolver_address(text: str) -> tuple[str, int]:
    """`--dns HOST[:PORT]`: an IPv4 or IPv6 literal (in brackets when a port follows)."""
    host, port = text, "53"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise invalid("--dns", f"{text!r} is not HOST[:PORT]: {_USAGE}")
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise invalid("--dns", f"{text!r} is not an IP address: {_USAGE}") from None
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise invalid("--dns", f"{text!r}: the port must be a number from 1 to 65535")
    return str(address), int(port)


class Lookups:
    """TXT lookups through one resolver; after a timeout the rest are not asked, so that a
    resolver that does not answer costs one timeout, not one per lookup."""

    def __init__(self, address: tuple[str, int] | None) -> None:
        self._stalled = ""
        self.resolver = "the system resolver"
        try:
            self._resolver = dns.resolver.Resolver(configure=address is None)
        except (dns.exception.DNSException, OSError):
            self._resolver = dns.resolver.Resolver(configure=False)
            self._stalled = "no system resolver is configured; name one with --dns HOST[:PORT]"
        self._resolver.lifetime = self._resolver.timeout = TIMEOUT
        if address is not None:
            self._resolver.nameservers = [address[0]]
            self._resolver.port = address[1]
            self.resolver = f"{address[0]}:{address[1]}"

    def txt(self, name: str) -> TxtAnswer:
        if self._stalled:
            return TxtAnswer(name, "failed", reason=self._stalled)
        try:
            answer = self._resolver.resolve(dns.name.from_text(name), "TXT", search=False)
        except dns.resolver.NXDOMAIN:
            return TxtAnswer(name, "absent", reason="NXDOMAIN: no such name")
        except dns.resolver.NoAnswer:
            return TxtAnswer(name, "absent", reason="the name has no TXT record")
        except dns.exception.Timeout:
            self._stalled = f"{self.resolver} did not answer within {TIMEOUT:g} s"
            return TxtAnswer(name, "failed", reason=self._stalled)
        except dns.resolver.NoNameservers as exc:
            return TxtAnswer(name, "failed", reason=f"{self.resolver} {_refusal(exc)}")
        except (dns.exception.DNSException, UnicodeError) as exc:
            return TxtAnswer(name, "failed", reason=" ".join(str(exc).split()))
        texts = tuple(
            b"".join(record.strings).decode("utf-8", "replace")
            for record in answer
            if isinstance(record, dns.rdtypes.ANY.TXT.TXT)
        )
        return TxtAnswer(name, "found", texts)


def _refusal(exc: dns.resolver.NoNameservers) -> str:
    """What came back instead of records: `answered SERVFAIL`, `answered REFUSED`, an error."""
    errors = exc.kwargs.get("errors") or []
    said = sorted({str(error[3]) for error in errors if len(error) > 3})
    if not said:
        return "gave no answer"
    rcodes = all(s.isalpha() and s.isupper() for s in said)
    return ("answered " if rcodes else "failed: ") + ", ".join(said)
