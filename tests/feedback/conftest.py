"""Fixtures for reading bounces: a private Dovecot, and the test CA trusted as a system CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from dovecot import Dovecot, running_dovecot


@pytest.fixture
def dovecot(server_cert: trustme.LeafCert) -> Iterator[Dovecot]:
    with running_dovecot(server_cert) as server:
        yield server


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """For the tests' own IMAP sessions (putting mail in, looking at flags)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def trusted_ca(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """batchmail trusts the test CA the way a user's system would: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return ca_file
