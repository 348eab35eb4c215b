"""Fixtures of the MCP tests: an asyncio event loop for the SDK's client, and a server setup."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpsupport import Setup, make_setup
from smtpserver import SmtpServerFactory


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def setup(tmp_path: Path, smtp_server: SmtpServerFactory, ca_file: Path) -> Setup:
    return make_setup(tmp_path, smtp_server, ca_file)
