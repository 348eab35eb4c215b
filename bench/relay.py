#!/usr/bin/env python3
"""Relay benchmark: batchmail vs mailmerge 2.3.0 on the same job, through a relay a chosen
round-trip time away that requires STARTTLS and AUTH.

One command: runs bench/setup.sh, generates the job (bench/gen_job.py) with STARTTLS and
login, starts the sink and the delay proxy (bench/relay_servers.py, each its own process),
then runs mailmerge and batchmail at each --connections value, interleaved per run, and
prints for each: msg/s over the whole process, the set-up time (first connect to the last
session authenticated), batchmail's msg/s once every session is up against the protocol
limit `connections / RTT`, and the CPU seconds of the client, the sink and the proxy.

Every run must deliver exactly N messages to the sink, or the benchmark fails loudly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as bl
import gen_job

USER = "relay-bench"
PASSWORD = "relay-bench-password"  # a test credential of the private sink, nothing else
SERVERS = bl.BENCH_DIR / "relay_servers.py"
_CPU_RE = re.compile(r"(User|System) time \(seconds\):\s*([\d.]+)")


@dataclass
class Contender:
    name: str
    connections: int  # 0: mailmerge (a new connection per message)
    argv: list[str]
    stdin: Path | None = None
    runs: list[Run] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    wall_s: float
    client_cpu_s: float
    sink_cpu_s: float
    proxy_cpu_s: float
    setup_s: float  # first connect to the last session authenticated (sink's clock)
    connected_rate: float  # msg/s from the last session authenticated to the last message
    connected_messages: int


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000, metavar="N",
                        help="recipients (messages) per run (1000)")
    parser.add_argument("--rtt-ms", type=float, default=20.0, metavar="MS",
                        help="round-trip time the proxy adds (20)")
    parser.add_argument("--connections", default="4,16", metavar="C,C",
                        help="batchmail rate.connections, one run each (4,16)")
    parser.add_argument("--runs", type=int, default=1, metavar="K", help="runs per contender (1)")
    parser.add_argument("--skip-mailmerge", action="store_true", help="only run batchmail")
    parser.add_argument("--skip-setup", action="store_true", help="do not run bench/setup.sh")
    parser.add_argument("--batchmail", type=Path, default=bl.DEFAULT_BATCHMAIL,
                        help="batchmail executable (the repo's .venv/bin/batchmail)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per contender run (1800)")
    args = parser.parse_args(argv)
    args.batchmail = bl.resolve_executable(args.batchmail)
    try:
        args.connections = [int(c) for c in args.connections.split(",")]
    except ValueError:
        parser.error("--connections: a comma-separated list of numbers, like 4,16")
    if args.recipients < 1 or args.runs < 1 or min(args.connections) < 1 or args.rtt_ms <= 0:
        parser.error("--recipients, --runs, --connections and --rtt-ms must be positive")
    return args


# --------------------------------------------------------------------------- servers


def make_certificates(python: Path, outdir: Path) -> None:
    """A private CA and the sink's certificate for 127.0.0.1, by trustme (in the repo's venv)."""
    script = (
        "import sys, trustme\n"
        "ca = trustme.CA()\n"
        "cert = ca.issue_cert('127.0.0.1', 'localhost')\n"
        "ca.cert_pem.write_to_path(sys.argv[1] + '/ca.pem')\n"
        "cert.private_key_pem.write_to_path(sys.argv[1] + '/key.pem')\n"
        "cert.cert_chain_pems[0].write_to_path(sys.argv[1] + '/cert.pem')\n"
    )
    subprocess.run([str(python), "-c", script, str(outdir)], check=True)


@dataclass
class Servers:
    sink: subprocess.Popen[bytes]
    proxy: subprocess.Popen[bytes]
    control_port: int

    def ask(self, word: str) -> dict[str, object]:
        with socket.create_connection((bl.LOOPBACK, self.control_port), 5) as conn:
            conn.sendall(word.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        return dict(json.loads(data))

    def wait_for(self, expected: int, timeout: float = 10.0, settle: float = 0.3) -> dict:
        """The sink's stats once it has `expected` messages and has stayed put for `settle` s."""
        deadline = time.monotonic() + timeout
        stats = self.ask("STATS")
        while len(stats["messages"]) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.ask("STATS")
        time.sleep(settle)  # catch over-delivery too
        return self.ask("STATS")


def measured_rtt(port: int) -> float:
    """The proxy's round trip as a client sees it: the median time of 20 NOOPs, in seconds."""
    with smtplib.SMTP(bl.LOOPBACK, port, timeout=10) as conn:
        conn.ehlo()
        times = []
        for _ in range(20):
            began = time.perf_counter()
            conn.noop()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = (bl.PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise bl.BenchError(f"the {what} exited at start (rc={proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection((bl.LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    raise bl.BenchError(f"the {what} did not listen on {bl.LOOPBACK}:{port}")


@contextlib.contextmanager
def servers(workdir: Path, sink_port: int, proxy_port: int, rtt_ms: float) -> Iterator[Servers]:
    control_port = bl.free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        for role, argv, port in (
            ("sink", [str(sink_port), str(control_port), "cert.pem", "key.pem"], sink_port),
            ("proxy", [str(proxy_port), str(sink_port), str(rtt_ms)], proxy_port),
        ):
            with (workdir / f"{role}.err").open("wb") as err:
                proc = subprocess.Popen([sys.executable, str(SERVERS), role, *argv], cwd=workdir,
                                        stderr=err, start_new_session=True)
            started.append(proc)
            _wait_port(port, proc, role)
        time.sleep(2 * rtt_ms / 1000 + 0.1)  # the probe's connection reaches the sink late
        yield Servers(started[0], started[1], control_port)
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- the job


def generate(args: argparse.Namespace, jobdir: Path, port: int) -> None:
    """The throughput bench's job, with STARTTLS and login for both contenders."""
    gen_job.generate(args.recipients, jobdir, port=port)
    job = (jobdir / "job.yaml").read_text()
    smtp = (
        "  security: starttls\n"
        "  username_env: RELAY_BENCH_USER\n"
        "  password_env: RELAY_BENCH_PASSWORD\n"
        "  ca_file: ca.pem\n"
    )
    job = job.replace("  security: none\n", smtp)
    for c in args.connections:
        (jobdir / f"job-{c}.yaml").write_text(
            re.sub(r"connections: \d+", f"connections: {c}", job))
    conf = (jobdir / "mailmerge_server.conf").read_text()
    (jobdir / "mailmerge_server.conf").write_text(
        conf.replace("security = Never", f"security = STARTTLS\nusername = {USER}"))
    # mailmerge asks for the password with getpass; without a terminal (its own session)
    # getpass reads it from stdin.
    secret = jobdir / "mailmerge.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)


def contenders(args: argparse.Namespace, jobdir: Path, rundir: Path) -> list[Contender]:
    found = []
    if not args.skip_mailmerge:
        found.append(Contender("mailmerge", 0, [
            str(bl.MAILMERGE_BIN), "--no-dry-run", "--no-limit",
            "--template", "mailmerge_template.txt", "--database", "mailmerge_database.csv",
            "--config", "mailmerge_server.conf", "--output-format", "text",
        ], jobdir / "mailmerge.password"))
    for c in args.connections:
        found.append(Contender(f"batchmail c={c}", c, [
            str(args.batchmail), "run", str(jobdir / f"job-{c}.yaml"),
            "--report", str(rundir / f"batchmail-{c}.report.json"),
            "--state-dir", str(rundir / f"batchmail-{c}.state"), "--new-run",
        ]))
    return found


# --------------------------------------------------------------------------- running


def run_once(contender: Contender, tag: str, servers: Servers, args: argparse.Namespace,
             jobdir: Path, rundir: Path) -> Run:
    n = args.recipients
    for state in rundir.glob("*.state"):
        shutil.rmtree(state)
    servers.ask("RESET")
    sink_cpu, proxy_cpu = cpu_seconds(servers.sink.pid), cpu_seconds(servers.proxy.pid)
    log_file = rundir / f"{contender.name.replace(' ', '-')}-{tag}.log"
    result = bl.timed_run(contender.argv, jobdir, log_file, args.timeout, contender.stdin)
    stats = servers.wait_for(n)
    log_file.with_suffix(".sink.json").write_text(json.dumps(stats))
    received = len(stats["messages"])
    if result.returncode != 0:
        raise bl.BenchError(
            f"{contender.name} run {tag} exited {result.returncode} after {result.wall_s:.1f} s, "
            f"sink got {received} of {n}; log {result.log_file}:\n{result.log_tail()}")
    if received != n or stats["recipients"] != n or stats["auth_failures"]:
        raise bl.BenchError(
            f"{contender.name} run {tag}: the sink received {received} messages for "
            f"{stats['recipients']} recipients with {stats['auth_failures']} failed logins; "
            f"expected exactly {n} and none")
    sink_cpu = cpu_seconds(servers.sink.pid) - sink_cpu
    proxy_cpu = cpu_seconds(servers.proxy.pid) - proxy_cpu
    client_cpu = sum(float(v) for _, v in _CPU_RE.findall(
        log_file.with_suffix(".time").read_text(errors="replace")))
    messages, ready = sorted(stats["messages"]), max(stats["authenticated"])
    after = [t for t in messages if t > ready]
    window = messages[-1] - ready
    return Run(result.wall_s, client_cpu, sink_cpu, proxy_cpu, ready - min(stats["connects"]),
               len(after) / window if after and window > 0 else 0.0, len(after))


def benchmark(found: list[Contender], args: argparse.Namespace, servers: Servers,
              jobdir: Path, rundir: Path) -> None:
    for run in range(1, args.runs + 1):
        order = found if run % 2 else list(reversed(found))
        for contender in order:
            bl.log(f"run {run}/{args.runs}: {contender.name} ({args.recipients} messages)")
            result = run_once(contender, str(run), servers, args, jobdir, rundir)
            contender.runs.append(result)
            # mailmerge logs in for every message: its "set-up" would be the whole run.
            setup = f"set-up {result.setup_s:.3f} s  " if contender.connections else ""
            bl.log(f"  {args.recipients / result.wall_s:8.1f} msg/s  {result.wall_s:7.2f} s  "
                   f"{setup}client CPU {result.client_cpu_s:.2f} s  "
                   f"sink CPU {result.sink_cpu_s:.2f} s  proxy CPU {result.proxy_cpu_s:.2f} s  "
                   f"sink +{args.recipients} OK")


# --------------------------------------------------------------------------- output


def _median(values: list[float]) -> float:
    return bl.Spread.of(values).median


def print_results(found: list[Contender], args: argparse.Namespace, measured: float) -> None:
    n, rtt = args.recipients, args.rtt_ms / 1000
    print(f"\nResults: {n} recipients/run, {args.runs} run(s) each, RTT {args.rtt_ms:g} ms "
          f"(delay proxy; {1000 * measured:.2f} ms measured by NOOP), STARTTLS + AUTH "
          f"PLAIN/LOGIN, sink 127.0.0.1 (medians over runs)")
    rows = []
    for c in found:
        rate = [n / r.wall_s for r in c.runs]
        wall = _median([r.wall_s for r in c.runs])
        cpu = [_median([getattr(r, f) for r in c.runs])
               for f in ("client_cpu_s", "sink_cpu_s", "proxy_cpu_s")]
        if c.connections:
            limit = c.connections / rtt
            connected = _median([r.connected_rate for r in c.runs])
            steady = [f"{connected:.1f}", f"{limit:.0f}", f"{100 * connected / limit:.1f}%",
                      f"{_median([r.setup_s for r in c.runs]):.3f}"]
        else:
            steady = ["-", "-", "-", "(each message)"]
        rows.append([c.name, f"{_median(rate):.1f}", f"{wall:.2f}", *steady,
                     *(f"{x:.2f} ({100 * x / wall:.0f}%)" for x in cpu)])
    bl.print_table(["contender", "msg/s", "wall s", "msg/s connected", "limit C/RTT",
                    "% of limit", "set-up s", "client CPU s", "sink CPU s", "proxy CPU s"],
                   rows)
    mailmerge = next((c for c in found if not c.connections), None)
    if mailmerge is not None:
        base = _median([n / r.wall_s for r in mailmerge.runs])
        for c in found:
            if c.connections:
                print(f"{c.name}/mailmerge: msg/s "
                      f"{bl.ratio(_median([n / r.wall_s for r in c.runs]), base)}")
    print("msg/s: recipients / wall time of the whole process (start-up included). "
          "msg/s connected: messages the sink received after the last session authenticated, "
          "per second until the last one; limit C/RTT: one message per round trip per "
          "session. set-up s: first connect to the last session authenticated. CPU s: "
          "seconds of CPU in the run (% of its wall time).")


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    if not args.skip_setup:
        bl.run_setup()
    bl.require_tools(need_mailmerge=not args.skip_mailmerge)
    problem = bl.batchmail_problem(args.batchmail)
    if problem:
        raise bl.BenchError(f"batchmail is not usable: {problem}")
    jobdir = bl.WORK_DIR / "relay"
    rundir = jobdir / "runs"
    shutil.rmtree(jobdir, ignore_errors=True)
    rundir.mkdir(parents=True)
    make_certificates(args.batchmail.parent / "python", jobdir)
    sink_port, proxy_port = bl.free_port(), bl.free_port()
    generate(args, jobdir, proxy_port)
    os.environ.update(RELAY_BENCH_USER=USER, RELAY_BENCH_PASSWORD=PASSWORD,
                      SSL_CERT_FILE=str(jobdir / "ca.pem"))
    found = contenders(args, jobdir, rundir)
    with servers(jobdir, sink_port, proxy_port, args.rtt_ms) as running:
        bl.log(f"sink on 127.0.0.1:{sink_port} (pid {running.sink.pid}), delay proxy "
               f"+{args.rtt_ms:g} ms RTT on 127.0.0.1:{proxy_port} (pid {running.proxy.pid})")
        measured = measured_rtt(proxy_port)
        bl.log(f"round trip through the proxy: {1000 * measured:.2f} ms (median of 20 NOOPs)")
        benchmark(found, args, running, jobdir, rundir)
    print_results(found, args, measured)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bl.run_main(run, parse_args(sys.argv[1:] if argv is None else argv), "contenders")


if __name__ == "__main__":
    sys.exit(main())
