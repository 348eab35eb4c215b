"""Shared helpers for the batchmail benchmarks: paths, smtp-sink, timed runs, stats.

Standard library only. All paths derive from this file's location.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "output"
SETUP_SCRIPT = BENCH_DIR / "setup.sh"
MAILMERGE_BIN = WORK_DIR / "mailmerge-venv" / "bin" / "mailmerge"
DEFAULT_BATCHMAIL = REPO_DIR / ".venv" / "bin" / "batchmail"
GNU_TIME = Path("/usr/bin/time")
LOOPBACK = "127.0.0.1"

_MESG_RE = re.compile(rb"mesg=(\d+)")
_RSS_RE = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")
_ELAPSED_RE = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*([\d:.]+)")
_PSS_RE = re.compile(rb"^Pss:\s+(\d+) kB", re.MULTILINE)
PROC = Path("/proc")


class BenchError(Exception):
    """A benchmark precondition or check failed; the message says what."""


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def fail(message: str) -> int:
    """Print a loud failure banner on stderr; return the exit code to use."""
    bar = "!" * 72
    print(f"\n{bar}\nBENCH FAILED: {message}\n{bar}", file=sys.stderr, flush=True)
    return 2


def _raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Make SIGTERM/SIGHUP unwind like Ctrl-C, so `finally` blocks stop what we started."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_keyboard_interrupt)


@contextlib.contextmanager
def exclusive_bench() -> Iterator[None]:
    """Hold bench/output/.lock for the whole benchmark, or fail at once.

    Two benchmarks at a time would share bench/output (one deletes the other's job) and
    skew each other's figures on the same cores.
    """
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with (WORK_DIR / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BenchError(
                f"another benchmark is running ({holder}); two at once would share bench/output "
                "and skew each other's figures: wait for it to finish"
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        handle.flush()
        yield


def run_setup() -> None:
    log(f"running {SETUP_SCRIPT.name}")
    subprocess.run(["bash", str(SETUP_SCRIPT)], check=True)


def require_tools(need_mailmerge: bool) -> None:
    missing = [str(GNU_TIME)] if not GNU_TIME.exists() else []
    if find_smtp_sink() is None:
        missing.append("smtp-sink")
    if need_mailmerge and not MAILMERGE_BIN.exists():
        missing.append(str(MAILMERGE_BIN.relative_to(BENCH_DIR)))
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run bench/setup.sh (or drop --skip-setup)")


# --------------------------------------------------------------------------- batchmail


def resolve_executable(path: Path) -> Path:
    """Absolute path of an executable given as a path or as a bare name looked up in PATH."""
    if path.parent == Path() and not path.exists():
        found = shutil.which(str(path))
        return Path(found) if found else path
    return path.resolve()


def batchmail_problem(batchmail: Path) -> str | None:
    """None if `batchmail --help` works, else a one-line reason why it does not."""
    if not batchmail.exists():
        return f"{batchmail} does not exist (is the package installed in the venv?)"
    try:
        proc = subprocess.run(
            [str(batchmail), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{batchmail} --help failed: {err}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else "(no output)"
        return f"`batchmail --help` exited {proc.returncode}: {last}"
    return None


# --------------------------------------------------------------------------- smtp-sink


def find_smtp_sink() -> str | None:
    found = shutil.which("smtp-sink")
    if found:
        return found
    fallback = Path("/usr/sbin/smtp-sink")
    return str(fallback) if fallback.exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"smtp-sink exited at start (rc={proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"smtp-sink did not listen on {LOOPBACK}:{port} within {timeout}s")


@dataclass
class Sink:
    """A running `smtp-sink -c` on loopback; its counter output goes to counter_file."""

    port: int
    proc: subprocess.Popen[bytes]
    counter_file: Path

    def messages(self) -> int:
        """Messages received so far (smtp-sink's running `mesg=` counter)."""
        with self.counter_file.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 256))
            found = _MESG_RE.findall(handle.read())
        return int(found[-1]) if found else 0

    def wait_for(self, expected: int, timeout: float = 10.0, settle: float = 0.3) -> int:
        """Wait until the counter reaches expected (and stays put for `settle` s); return it."""
        deadline = time.monotonic() + timeout
        count = self.messages()
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            count = self.messages()
        time.sleep(settle)  # catch over-delivery too
        return self.messages()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def smtp_sink(port: int, logdir: Path, dump_file: Path | None = None,
              dump_marker: str = "") -> Iterator[Sink]:
    """Start smtp-sink on 127.0.0.1:port (counting messages); always stop it on exit."""
    binary = find_smtp_sink()
    if binary is None:
        raise BenchError("smtp-sink not found: run bench/setup.sh")
    logdir.mkdir(parents=True, exist_ok=True)
    counter_file = logdir / f"smtp-sink-{port}.out"
    cmd = [binary, "-c"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
    if dump_file is not None:
        cmd += ["-D", str(dump_file), "-S", dump_marker]
    cmd += [f"{LOOPBACK}:{port}", "1000"]
    with counter_file.open("wb") as out, (logdir / f"smtp-sink-{port}.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    sink = Sink(port, proc, counter_file)
    try:
        _wait_listening(port, proc)
        yield sink
    finally:
        sink.stop()


# --------------------------------------------------------------------------- timed runs


@dataclass(frozen=True)
class Measurement:
    """One command run under /usr/bin/time -v."""

    wall_s: float
    max_rss_kb: int  # largest single process (GNU time's "Maximum resident set size")
    tree_pss_kb: int  # sampled peak of the summed PSS of all its processes (0: not sampled)
    returncode: int
    log_file: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(root: int) -> list[int]:
    children = _children_map()
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _pss_kb(pid: int) -> int:
    try:
        match = _PSS_RE.search((PROC / str(pid) / "smaps_rollup").read_bytes())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


class TreeMemorySampler:
    """Samples the summed PSS of all descendants of a pid (the command under /usr/bin/time).

    PSS splits pages shared between processes (e.g. after fork) among them, so the sum is
    the tree's real footprint; GNU time's max RSS only shows the largest single process.
    """

    def __init__(self, root_pid: int, interval: float = 0.1):
        self.root_pid = root_pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pss-sampler", daemon=True)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = sum(_pss_kb(pid) for pid in _descendants(self.root_pid))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)


def parse_time_v(text: str) -> tuple[int, float | None]:
    """(max RSS in KiB, elapsed seconds or None) from GNU time -v output."""
    rss = _RSS_RE.search(text)
    if rss is None:
        raise BenchError("no 'Maximum resident set size' in /usr/bin/time -v output")
    elapsed = _ELAPSED_RE.search(text)
    seconds: float | None = None
    if elapsed:
        seconds = 0.0
        for part in elapsed.group(1).split(":"):
            seconds = seconds * 60 + float(part)
    return int(rss.group(1)), seconds


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group we created for proc (TERM, then KILL)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def timed_run(cmd: Sequence[str | Path], cwd: Path, log_file: Path,
              timeout: float | None = None, stdin: Path | None = None) -> Measurement:
    """Run cmd under `/usr/bin/time -v`; stdout is discarded, stderr goes to log_file, stdin
    comes from the file `stdin` if given."""
    time_file = log_file.with_suffix(".time")
    full = [str(GNU_TIME), "-v", "-o", str(time_file), *map(str, cmd)]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as err, \
            (stdin.open("rb") if stdin else contextlib.nullcontext(None)) as source:
        start = time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, stdin=source, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        # A blocking wait, the timeout kept by a watchdog: Popen.wait(timeout) polls, sleeping
        # up to 50 ms between looks, which would add up to 50 ms to every run's time.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _stop_group(proc)

        watchdog = threading.Timer(timeout, expire) if timeout else None
        try:
            with TreeMemorySampler(proc.pid) as sampler:
                if watchdog is not None:
                    watchdog.start()
                returncode = proc.wait()
                wall = time.perf_counter() - start
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if expired.is_set():
            raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(map(str, cmd))}")
    try:
        time_text = time_file.read_text(errors="replace")
    except OSError as err:  # e.g. the work dir was removed under us
        raise BenchError(f"cannot read the /usr/bin/time -v output: {err}") from None
    rss_kb, _elapsed = parse_time_v(time_text)
    return Measurement(wall, rss_kb, sampler.peak_kb, returncode, log_file)


# --------------------------------------------------------------------------- formatting


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


def mib(kb: float) -> str:
    return f"{kb / 1024:.1f} MiB"


def ratio(numerator: float, denominator: float) -> str:
    return f"x{numerator / denominator:.2f}" if denominator else "n/a"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, ["-" * w for w in widths], *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def run_main(run: Callable[[Any], int], args: Any, what: str) -> int:
    """Run a bench alone (bench/output/.lock) with signal handling; a BenchError becomes a
    failure banner and exit status 2."""
    install_signal_handlers()
    try:
        with exclusive_bench():
            return run(args)
    except BenchError as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted; smtp-sink and running {what} were stopped", file=sys.stderr)
        return 130
