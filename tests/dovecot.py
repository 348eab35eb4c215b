"""A private Dovecot IMAP server for the tests: its own configuration in a temporary folder, one
passwd-file user, IMAPS only on a free 127.0.0.1 port with a trustme certificate, stopped by PID.

Dovecot runs as the user starting it (root in CI); its internal and login processes, and the
mail, belong to the unprivileged users Debian's package creates.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
from processes import free_port, stop

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.1"
USER = "bounces@example.com"
PASSWORD = "imap-Pa55w0rd-91c2"  # a value that must never appear in any output
_START_TIMEOUT = 15.0

CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = {host}
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
ssl = required
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={base}/home/%u
}}
mail_location = maildir:{base}/mail/%u
first_valid_uid = {uid}
last_valid_uid = {uid}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {host}
    port = {port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


@dataclass
class Dovecot:
    port: int
    folder: Path  # the server's own folder (configuration, mail, logs)

    @property
    def url(self) -> str:
        return f"imaps://{USER}@{HOST}:{self.port}/INBOX"

    def session(self, context: ssl.SSLContext) -> imaplib.IMAP4_SSL:
        session = imaplib.IMAP4_SSL(HOST, self.port, ssl_context=context, timeout=10)
        session.login(USER, PASSWORD)
        return session

    def append(self, context: ssl.SSLContext, messages: list[bytes], folder: str = "INBOX") -> None:
        session = self.session(context)
        try:
            if folder != "INBOX":
                session.create(folder)
            for data in messages:
                status, reply = session.append(folder, "", None, data)
                assert status == "OK", reply
        finally:
            session.logout()

    def unseen(self, context: ssl.SSLContext, folder: str = "INBOX") -> int:
        session = self.session(context)
        try:
            session.select(folder, readonly=True)
            _, found = session.search(None, "UNSEEN")
            return len(found[0].split())
        finally:
            session.logout()


@contextmanager
def running_dovecot(cert: trustme.LeafCert) -> Iterator[Dovecot]:
    """Start Dovecot in the foreground (`-F`) and stop it by its PID."""
    # Under /tmp rather than pytest's folder: Dovecot's unprivileged users must reach the mail.
    base = Path(tempfile.mkdtemp(prefix="batchmail-dovecot-"))
    base.chmod(0o755)
    port = free_port(host=HOST)
    try:
        cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
        cert.private_key_pem.write_to_path(str(base / "key.pem"))
        (base / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        for name in ("mail", "home"):
            (base / name).mkdir()
            shutil.chown(base / name, "dovecot", "dovecot")
        config = base / "dovecot.conf"
        uid = pwd.getpwnam("dovecot").pw_uid
        config.write_text(CONFIG.format(base=base, host=HOST, port=port, uid=uid))
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(port, process, base)
            yield Dovecot(port, base)
        finally:
            stop(process)
    finally:
        if not os.environ.get("KEEP_DOVECOT"):
            shutil.rmtree(base, ignore_errors=True)


def _wait_for(port: int, process: subprocess.Popen[bytes], base: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log = (
                (base / "dovecot.log").read_text(errors="replace")
                if (base / "dovecot.log").exists()
                else ""
            )
            raise RuntimeError(f"dovecot exited with {process.returncode}: {stderr} {log}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {HOST}:{port}")
