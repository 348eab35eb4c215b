"""A DKIM key for the tests, and a DNS that knows only it: no real DNS is ever asked."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import make_job

DOMAIN = "example.com"
SELECTOR = "sel2026"


@dataclass(frozen=True)
class DkimKey:
    private_pem: bytes
    txt_record: bytes  # what DNS would publish at SELECTOR._domainkey.DOMAIN

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        """A DNS TXT lookup serving only the test key: no real DNS is ever asked."""
        wanted = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return self.txt_record if name == wanted else None

    def verify(self, data: bytes) -> bool:
        return bool(dkim.verify(data, dnsfunc=self.dns))


def make_dkim_key() -> DkimKey:
    """A fresh 2048-bit RSA key and the TXT record that would publish it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


def dkim_job(folder: Path, port: int, key: DkimKey, **settings: Any) -> Path:
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    (folder / "keys" / "dkim.pem").write_bytes(key.private_pem)
    dkim_settings = {"domain": DOMAIN, "selector": SELECTOR, "private_key_file": "keys/dkim.pem"}
    return make_job(folder, port, dkim=dkim_settings, **settings)
