"""A private dnsmasq for the tests: its own configuration in a temporary folder, TXT records only,
answering on a free 127.0.0.1 port (UDP and TCP), stopped by its PID.

Names under the `local` domains are answered from the configuration alone: a name it was not
given is NXDOMAIN there, and any other name is REFUSED (no upstream server is ever asked).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from processes import free_port, stop

DNSMASQ = "/usr/sbin/dnsmasq"
HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STRING = 255  # the longest character-string of a TXT record (RFC 1035 3.3)


@dataclass
class Dnsmasq:
    port: int
    folder: Path  # the server's own folder (configuration, pid file, log)

    @property
    def address(self) -> str:
        """What `--dns` takes."""
        return f"{HOST}:{self.port}"


def _txt_line(name: str, text: str) -> str:
    """One TXT record: long text split into 255-byte strings, which receivers join."""
    assert '"' not in text, "the test records need no escapes"
    assert "\\" not in text, "the test records need no escapes"
    chunks = [text[i : i + _STRING] for i in range(0, len(text), _STRING)] or [""]
    return f"txt-record={name}," + ",".join(f'"{chunk}"' for chunk in chunks)


def config_text(
    folder: Path, port: int, records: Sequence[tuple[str, str]], local: Sequence[str]
) -> str:
    lines = [
        "no-resolv",
        "no-hosts",
        f"listen-address={HOST}",
        "bind-interfaces",
        f"port={port}",
        f"pid-file={folder / 'dnsmasq.pid'}",
        *(f"local=/{domain}/" for domain in local),
        *(_txt_line(name, text) for name, text in records),
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def running_dnsmasq(
    folder: Path,
    records: Sequence[tuple[str, str]],
    local: Sequence[str] = ("example.com",),
) -> Iterator[Dnsmasq]:
    """Start dnsmasq in the foreground serving `records` (name, text); stop it by its PID."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM, HOST)
    config = folder / "dnsmasq.conf"
    config.write_text(config_text(folder, port, records, local), encoding="utf-8")
    command = [DNSMASQ, f"--conf-file={config}", "--keep-in-foreground", "--log-facility=-"]
    if os.geteuid() == 0:  # dnsmasq drops root for this user once its port is bound
        command += ["--user=nobody", "--group=nogroup"]
    with (folder / "dnsmasq.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, process, folder)
        yield Dnsmasq(port, folder)
    finally:
        stop(process)


def _wait_for(port: int, process: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    query = dns.message.make_query("batchmail.test.", dns.rdatatype.TXT)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "dnsmasq.log").read_text(errors="replace")
            raise RuntimeError(f"dnsmasq exited with {process.returncode}: {log}")
        try:
            dns.query.udp(query, HOST, port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"dnsmasq did not answer on {HOST}:{port}")
