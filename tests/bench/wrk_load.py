"""Closed-loop (and paced) HTTP load with `wrk`, pinned to the load core; parses rps and latency percentiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import LOAD_CORE, Unavailable, pinned

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_wrk() -> str:
    """Path of wrk, installing the Debian package once if missing (the brief allows apt-get here)."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300)
    found = shutil.which("wrk")
    if not found:
        raise Unavailable("wrk is not installed and `apt-get install -y wrk` did not provide it")
    return found


def lua_script(body_file: Path, delay_ms: float | None) -> Path:
    """A wrk script POSTing the JSON body in `body_file`; with `delay_ms`, each connection pauses between requests."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f'local f = assert(io.open("{body_file}", "rb"))',
        "wrk.body = f:read(\"*a\")",
        "f:close()",
    ]
    if delay_ms is not None:
        lines.append(f"function delay() return {int(delay_ms)} end")
    fd, path = tempfile.mkstemp(suffix=".lua", prefix="bench-")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and p50 and p99):
        raise ValueError(f"wrk output not understood:\n{output}")
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        m = re.search(pattern, output)
        errors += int(m.group(1)) if m else 0
    return WrkResult(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), errors)


def run(url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    """One wrk run; `seconds` is rounded to whole seconds (wrk's resolution), at least 1."""
    argv = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                              "-s", str(script), url])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return parse(proc.stdout)
