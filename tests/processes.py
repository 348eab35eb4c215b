"""The private servers' processes (Dovecot, dnsmasq, Postfix, batchmail's own): a free loopback
port to give them, and stopping one by its PID."""

from __future__ import annotations

import socket
import subprocess

LOOPBACK = "127.0.0.1"


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM, host: str = LOOPBACK) -> int:
    """A port of `host` nobody holds now (TCP, or UDP with SOCK_DGRAM)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
