"""Fixtures for the real SMTP test servers in `smtpserver`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import trustme
from smtpserver import GreetingReject, Script, Security, SmtpServer, SmtpServerFactory, Tarpit


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def smtp_server(server_cert: trustme.LeafCert) -> Iterator[SmtpServerFactory]:
    """Start `SmtpServer`s on demand; all are stopped at teardown.

    `cert` defaults to `server_cert` (trusted by `ca`) for starttls/tls.
    """
    with ExitStack() as running:

        def start(
            security: Security = "none",
            auth: tuple[str, str] | None = None,
            script: Script | None = None,
            *,
            auth_require_tls: bool = True,
            cert: trustme.LeafCert | None = None,
        ) -> SmtpServer:
            server = SmtpServer(
                security=security,
                cert=cert or server_cert,
                auth=auth,
                auth_require_tls=auth_require_tls,
                script=script,
            )
            return running.enter_context(server)

        yield start


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    with Tarpit() as server:
        yield server


@pytest.fixture
def greeting_reject() -> Iterator[GreetingReject]:
    with GreetingReject() as server:
        yield server
