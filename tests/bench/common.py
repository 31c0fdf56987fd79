"""Shared benchmark plumbing: peer virtualenvs, core pinning, timing, tables and the JSON results file.

Numbers on a 2-core noisy machine only mean something relative to a peer measured in the same run, so
everything here returns medians of repeats after a warm-up, and nothing ever asserts on time.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("MLOPS_BENCH_CACHE", Path.home() / ".cache" / "mlops-operator" / "bench"))
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[2]
SERVER_CORE, LOAD_CORE = 0, 1


class Unavailable(Exception):
    """A peer could not be installed or started: reported in the table, never fatal to the run."""


class TimedOut(Unavailable):
    """A worker ran longer than its time-out (``seconds``)."""

    def __init__(self, what: str, seconds: float):
        super().__init__(f"{what} took longer than {seconds:.0f}s")
        self.seconds = seconds


def peer_venv(name: str, requirements: Sequence[str], timeout: float) -> Path:
    """Python of a cached throwaway venv under CACHE/<name> with `requirements` installed from PyPI.

    The marker file records the exact requirement list, so a changed pin reinstalls and an unchanged one
    costs nothing. Raises Unavailable with pip's last lines if installation fails or exceeds `timeout`.
    """
    venv = CACHE / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    wanted = "\n".join(requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"  installing {name}: {' '.join(requirements)} (once; cached in {venv}) ...", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip install of {name} took longer than {timeout:.0f}s") from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Unavailable(f"cannot create venv {venv}: {exc}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise Unavailable(f"pip install failed: {tail}")
    marker.write_text(wanted)
    return python


def run_worker(argv: Sequence[str], timeout: float, what: str, env: dict[str, str] | None = None) -> dict:
    """The JSON result a worker process prints as its last stdout line. Raises TimedOut (an Unavailable)
    past ``timeout``, Unavailable with its last stderr lines if it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise TimedOut(what, timeout) from None
    if proc.returncode != 0:
        raise Unavailable(f"{what} failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(proc: subprocess.Popen, url: str, what: str, log: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail fast (naming ``log``) if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"{what} exited with {proc.returncode} before becoming ready (see {log})")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise Unavailable(f"{what} not ready after {timeout:.0f}s (see {log})")


def stop_group(proc: subprocess.Popen, log: Any) -> None:
    """Stop a server started in its own session (``start_new_session``): TERM the group, KILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    log.close()


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def median_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def process_tree_rss_mib(pid: int) -> float:
    """Resident memory of `pid` plus all its descendants (MLServer forks workers), in MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):  # 3 significant digits below 100 (0.0111 s, 2.68x), whole numbers above
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|-" + "-|-".join("-" * w for w in widths) + "-|", *(line(r) for r in cells)])


def times(value: float | None) -> str:
    """A ratio as printed beside a bar: ``2.68x``, or ``-`` when it could not be measured."""
    return "-" if value is None else f"{value:.2f}x"


def bar_line(text: str, met: bool | None) -> str:
    verdict = "n/a" if met is None else ("MET" if met else "NOT MET")
    return f"  bar: {text:<58} -> {verdict}"


def print_bars(bars: Sequence[dict]) -> None:
    """Print a benchmark's bars (``{"bar", "ratio", "met"}``), each with its ratio, under one heading."""
    print("\nbars (informational; docs/benchmarks.md):")
    for b in bars:
        print(bar_line(f"{b['bar']} [{times(b['ratio'])}]", b["met"]))


def write_results(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           **doc}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path
