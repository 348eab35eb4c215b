"""Interop with a real MTA: batchmail -> a private Postfix instance -> an aiosmtpd sink.

Postfix listens on a free 127.0.0.1 port and relays everything to the sink; it has no local
delivery and no other destination. The messages that arrive must parse to what batchmail
sent, and their DKIM signatures must still verify after Postfix handled them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from dkimsupport import DOMAIN, SELECTOR, DkimKey, dkim_job, make_dkim_key
from processes import free_port
from smtpserver import SmtpServer, SmtpServerFactory
from support import PDF, PNG, parse, report_of, run_cli

POSTFIX = "/usr/sbin/postfix"
_INSTALL_TIMEOUT = 600
_START_TIMEOUT = 20.0

# Only the services a relay needs; no chroot, so nothing has to be copied into a jail.
MASTER_CF = """\
{listen}  inet  n  -  n  -  -  smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -  0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -  -  trivial-rewrite
bounce    unix  -  -  n  -  0  bounce
defer     unix  -  -  n  -  0  bounce
trace     unix  -  -  n  -  0  bounce
verify    unix  -  -  n  -  1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -  -  proxymap
smtp      unix  -  -  n  -  -  smtp
relay     unix  -  -  n  -  -  smtp
showq     unix  n  -  n  -  -  showq
error     unix  -  -  n  -  -  error
retry     unix  -  -  n  -  -  error
discard   unix  -  -  n  -  -  discard
anvil     unix  -  -  n  -  1  anvil
scache    unix  -  -  n  -  1  scache
postlog   unix-dgram  n  -  n  -  1  postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
syslog_name = postfix-batchmail-test
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.batchmail.test
mydomain = batchmail.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink}
default_transport = smtp:[127.0.0.1]:{sink}
relay_transport = smtp:[127.0.0.1]:{sink}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = yes
biff = no
"""


def _have_postfix() -> bool:
    return Path(POSTFIX).exists() and shutil.which("postconf") is not None


def _install_postfix() -> str | None:
    """Install Debian's postfix without starting its system daemon; None, or why not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "postfix is not installed, and installing it needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    selection = "postfix postfix/main_mailer_type select No configuration\n"
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    try:
        if added_policy:  # invoke-rc.d asks it: 101 means "do not start services"
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        subprocess.run(["debconf-set-selections"], input=selection, text=True, check=True)
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
        ):
            subprocess.run(
                command, env=env, check=True, capture_output=True, timeout=_INSTALL_TIMEOUT
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"postfix could not be installed: {exc}"
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    return None if _have_postfix() else "postfix could not be installed"


class Postfix:
    """A private Postfix instance: its own config and queue directories under `base`."""

    def __init__(self, base: Path, sink_port: int):
        self.base = base
        self.config = base / "etc"
        self.port = free_port()
        self.sink_port = sink_port

    def configure(self) -> None:
        # Postfix's daemons run as the postfix user: it must reach the queue below `base`.
        self.base.chmod(0o755)
        for name in ("etc", "queue", "data"):
            (self.base / name).mkdir(exist_ok=True)
        shutil.chown(self.base / "data", "postfix", "postfix")
        listen = f"127.0.0.1:{self.port}"
        (self.config / "master.cf").write_text(MASTER_CF.format(listen=listen))
        main = MAIN_CF.format(base=self.base, sink=self.sink_port)
        (self.config / "main.cf").write_text(main)
        self._postfix("set-permissions")

    def start(self) -> None:
        self._postfix("start")
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        subprocess.run(
            [POSTFIX, "-c", str(self.config), "stop"], capture_output=True, timeout=60, check=False
        )

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"

    def _postfix(self, *args: str) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {done.stderr}{done.stdout}")


@pytest.fixture(scope="module")
def dkim_key() -> DkimKey:
    return make_dkim_key()


@pytest.fixture(scope="module")
def postfix_available() -> None:
    if _have_postfix():
        return
    reason = _install_postfix()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def relay(
    postfix_available: None, smtp_server: SmtpServerFactory
) -> Iterator[tuple[Postfix, SmtpServer]]:
    sink = smtp_server()
    base = Path(tempfile.mkdtemp(prefix="batchmail-postfix-"))
    postfix = Postfix(base, sink.port)
    try:
        postfix.configure()
        postfix.start()
        yield postfix, sink
    finally:
        postfix.stop()
        shutil.rmtree(base, ignore_errors=True)


PEOPLE = [
    {"email": "zoe@example.net", "name": "Zoë Ångström", "team": "Ökonomie"},
    {"email": "li@example.org", "name": "李 小龍", "team": "研究"},
    {"email": "ann@example.com", "name": "Ann O'Neil", "team": "core"},
]


def _leaves(message: EmailMessage) -> list[tuple[str, str | None, bytes]]:
    """Every leaf part as (type, filename, decoded content)."""
    leaves = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        leaves.append((part.get_content_type(), part.get_filename(), payload))
    return leaves


_VARYING = {"received", "dkim-signature", "date", "message-id", "return-path"}


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [(k.lower(), str(v)) for k, v in message.items() if k.lower() not in _VARYING]


def test_messages_relayed_by_postfix_arrive_intact_and_dkim_still_verifies(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[Postfix, SmtpServer],
    dkim_key: DkimKey,
) -> None:
    postfix, sink = relay
    unsubscribe = {"url": "https://lists.example.com/u?e={{ email | urlencode }}"}
    job = dkim_job(
        tmp_path,
        postfix.port,
        dkim_key,
        recipients=PEOPLE,
        subject="Grüße, {{ name }}: Bericht für {{ team }}",
        unsubscribe=unsubscribe | {"one_click": True},
        **{"from": "Berichte Ödön <reports@example.com>"},
    )
    preview = tmp_path / "preview"
    assert run_cli(capsys, "run", job, "--dry-run", "--out", preview).code == 0
    result = run_cli(capsys, "run", job, "--report", tmp_path / "report.json")
    assert result.code == 0, result.err

    try:
        received = sink.wait_for(len(PEOPLE), timeout=30)
    except TimeoutError:
        pytest.fail(f"postfix did not relay every message:\n{postfix.log()}")
    report = report_of(tmp_path / "report.json")
    assert report["summary"]["sent"] == len(PEOPLE)
    by_rcpt = {m.rcpt_tos[0]: m for m in received}
    assert sorted(by_rcpt) == sorted(p["email"] for p in PEOPLE)
    sent_ids = {r["email"]: r["message_id"] for r in report["recipients"]}
    previews = {p.name.split("-", 1)[1].removesuffix(".eml"): p for p in preview.glob("*.eml")}
    for person in PEOPLE:
        data = by_rcpt[person["email"]].data
        assert data.startswith(b"Received: ")  # Postfix's only addition
        assert dkim_key.verify(data), data[:2000]
        message, expected = parse(data), parse(previews[person["email"]].read_bytes())
        assert message["Message-ID"] == sent_ids[person["email"]]
        assert _headers(message) == _headers(expected)
        assert message["Subject"] == f"Grüße, {person['name']}: Bericht für {person['team']}"
        assert _leaves(message) == _leaves(expected)
        contents = [content for _, _, content in _leaves(message)]
        assert PDF in contents
        assert PNG in contents
    assert f"d={DOMAIN}" in parse(received[0].data)["DKIM-Signature"]
    assert f"s={SELECTOR}" in parse(received[0].data)["DKIM-Signature"]
