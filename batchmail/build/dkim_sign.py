"""DKIM signing (RFC 6376) of finished messages; the one module that uses dkimpy."""

from __future__ import annotations

import re
from collections.abc import Sequence

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key, parse_public_key

from batchmail.errors import invalid
from batchmail.load.settings import DkimSettings

# RFC 6376 5.4.1: the fields a signature should cover, when present.
DEFAULT_HEADERS = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
# RFC 8058 4: the one-click fields MUST be covered, or a forwarder could point them elsewhere.
ALWAYS_SIGNED = ("from", "list-unsubscribe", "list-unsubscribe-post")
# relaxed/relaxed survives the re-folding and whitespace changes of relays (RFC 6376 3.4).
_CANONICALIZE = (b"relaxed", b"relaxed")
_FIELD_NAME = re.compile(rb"^([^:\s]+):", re.MULTILINE)


class Signer:
    """Signs messages with one key; the key is read and checked once, when the job loads."""

    def __init__(self, settings: DkimSettings):
        self.settings = settings
        # dkimpy finds the PEM body only between LF line ends.
        self._key = settings.private_key.replace(b"\r\n", b"\n")
        try:
            parse_pem_private_key(self._key)
        except (UnparsableKeyError, ValueError, IndexError) as exc:
            reason = " ".join(str(exc).split())
            raise invalid(
                settings.where,
                f"the DKIM private key {settings.key_source} is not a PEM RSA key: {reason}",
                "dkim",
            ) from None
        self._domain = settings.domain.encode("idna")
        self._selector = settings.selector.encode("ascii")
        self._sizes: dict[tuple[bytes, ...], int] = {}

    def signature(self, message: bytes) -> bytes:
        """The `DKIM-Signature:` field for `message` (CRLF-terminated), to put on top of it."""
        return bytes(
            dkim.sign(
                message,
                self._selector,
                self._domain,
                self._key,
                canonicalize=_CANONICALIZE,
                include_headers=list(self._signed(message)),
            )
        )

    def signature_size(self, message: bytes) -> int:
        """The length `signature(message)` has, computed once per set of signed fields.

        Every tag of a signature has a fixed length for a given key and field list, so the
        validation pass need not pay for an RSA operation per message.
        """
        signed = self._signed(message)
        if signed not in self._sizes:
            self._sizes[signed] = len(self.signature(message))
        return self._sizes[signed]

    def _signed(self, message: bytes) -> tuple[bytes, ...]:
        present = _field_names(message)
        chosen: Sequence[str] = self.settings.headers or [
            h for h in DEFAULT_HEADERS if h in present
        ]
        extra = [h for h in ALWAYS_SIGNED if h in present and h not in chosen]
        # Signing From once more than it occurs stops anyone adding a second From (RFC 6376 8.15).
        names = [*chosen, *extra, "from"]
        return tuple(name.encode("ascii") for name in names)


def _field_names(message: bytes) -> set[str]:
    head = message.split(b"\r\n\r\n", 1)[0]
    return {m.group(1).decode("ascii", "replace").lower() for m in _FIELD_NAME.finditer(head)}


def public_numbers(private_key: bytes) -> tuple[int, int]:
    """The public half (modulus, exponent) of a PEM RSA private key that `Signer` accepted."""
    key = parse_pem_private_key(private_key.replace(b"\r\n", b"\n"))
    return int(key["modulus"]), int(key["publicExponent"])


def published_numbers(der: bytes) -> tuple[int, int]:
    """The (modulus, exponent) of a DKIM record's decoded `p=` (RFC 6376 3.6.1): an RSA key as
    SubjectPublicKeyInfo or bare RSAPublicKey; ValueError when it is neither."""
    try:
        key = parse_public_key(der)
        return int(key["modulus"]), int(key["publicExponent"])
    except (UnparsableKeyError, ValueError, IndexError, TypeError, KeyError) as exc:
        raise ValueError("not an RSA public key") from exc
