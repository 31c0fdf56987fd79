"""Fixed-rate HTTP load with vegeta (open loop, so queueing shows in the tails), pinned to the load core.

wrk has no fixed-rate mode: at a fixed offered rate a slow response delays nothing else that was scheduled,
which is what "p99 at 500 rps" means. vegeta is built once from the Go module proxy into
~/.cache/mlops-operator/bin/vegeta-<version> (Go at /usr/local/go/bin/go) and reused afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import LOAD_CORE, Unavailable, pinned

VEGETA_MODULE, VEGETA_VERSION = "github.com/tsenart/vegeta/v12", "v12.13.0"
BIN_DIR = Path.home() / ".cache" / "mlops-operator" / "bin"
GO = os.environ.get("GO", "/usr/local/go/bin/go")


@dataclass
class Attack:
    rate: int
    requests: int
    achieved_rps: float  # vegeta's throughput: successful responses per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    success: float  # fraction of 2xx answers
    status_codes: dict
    errors: list
    second_p99_ms: list[float]  # p99 of each whole second of the run (requests by start time)


def ensure_vegeta() -> Path:
    """Path of the cached vegeta binary, building it with `go install` the first time (about a minute)."""
    binary = BIN_DIR / f"vegeta-{VEGETA_VERSION}"
    if binary.exists():
        return binary
    go = GO if Path(GO).exists() else shutil.which("go")
    if not go:
        raise Unavailable(f"vegeta is not cached at {binary} and no Go toolchain was found to build it")
    print(f"  building vegeta {VEGETA_VERSION} from the Go module proxy (once; cached in {binary}) ...", flush=True)
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vegeta-build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        proc = subprocess.run([go, "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"], env=env, capture_output=True,
                              text=True, timeout=900)
        built = Path(gobin) / "vegeta"
        if proc.returncode != 0 or not built.exists():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise Unavailable(f"go install {VEGETA_MODULE}@{VEGETA_VERSION} failed: {tail}")
        shutil.copy2(built, binary.with_suffix(".tmp"))
        binary.with_suffix(".tmp").rename(binary)  # atomic: a half-copied binary is never cached
    print(f"  vegeta built: {binary}", flush=True)
    return binary


def targets_file(workdir: Path, name: str, url: str, body_file: Path) -> Path:
    """A vegeta `http`-format target: POST the JSON body in `body_file` to `url`."""
    path = workdir / f"targets-{name}.txt"
    path.write_text(f"POST {url}\nContent-Type: application/json\n@{body_file}\n")
    return path


def attack(vegeta: Path, targets: Path, rate: int, seconds: float, timeout: float = 5.0) -> Attack:
    """One open-loop attack at `rate` requests/s for `seconds`."""
    return _attack(vegeta, rate, [f"-targets={targets}", "-format=http", f"-rate={rate}/s", f"-duration={seconds:g}s",
                                  f"-timeout={timeout:g}s", "-workers=16"], seconds + timeout + 60)


def counted(vegeta: Path, workdir: Path, url: str, body_file: Path, requests: int, workers: int = 16,
            timeout: float = 5.0) -> Attack:
    """Exactly `requests` POSTs as fast as `workers` concurrent connections allow (closed loop).

    For counting, not timing: an open loop above what a proxy sustains on a busy machine piles up
    connections until its upstream keep-alive pools overflow and ephemeral ports run out, and then the
    upstreams' counts say more about TIME_WAIT than about the split. vegeta stops at the end of a lazily
    read target list, so the list has one line per request.
    """
    path = workdir / f"targets-{requests}.jsonl"
    line = json.dumps({"method": "POST", "url": url, "body": base64.b64encode(body_file.read_bytes()).decode(),
                       "header": {"Content-Type": ["application/json"]}}) + "\n"
    path.write_text(line * requests)
    try:
        return _attack(vegeta, 0, [f"-targets={path}", "-format=json", "-lazy", "-rate=0", f"-max-workers={workers}",
                                   f"-workers={workers}", "-duration=0", f"-timeout={timeout:g}s"], 600)
    finally:
        path.unlink()


def _attack(vegeta: Path, rate: int, args: list[str], limit: float) -> Attack:
    """Run `vegeta attack` pinned to the load core; figures from `vegeta report -type=json` and the raw CSV."""
    with tempfile.NamedTemporaryFile(prefix="vegeta-", suffix=".bin") as results:
        argv = pinned(LOAD_CORE, [str(vegeta), "attack", *args, "-keepalive=true", f"-output={results.name}"])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        if proc.returncode != 0:
            raise RuntimeError(f"vegeta attack failed ({proc.returncode}): {proc.stderr.strip()}")
        report = subprocess.run([str(vegeta), "report", "-type=json", results.name], capture_output=True, text=True,
                                timeout=120, check=True)
        csv = subprocess.run([str(vegeta), "encode", "--to", "csv", results.name], capture_output=True, text=True,
                             timeout=120, check=True)
    doc = json.loads(report.stdout)
    lat = doc["latencies"]
    return Attack(rate=rate, requests=doc["requests"], achieved_rps=doc["throughput"], p50_ms=lat["50th"] / 1e6,
                  p90_ms=lat["90th"] / 1e6, p99_ms=lat["99th"] / 1e6, max_ms=lat["max"] / 1e6, success=doc["success"],
                  status_codes=doc.get("status_codes") or {}, errors=(doc.get("errors") or [])[:5],
                  second_p99_ms=_second_p99s(csv.stdout))


def _second_p99s(csv: str) -> list[float]:
    """p99 latency of each whole second of an attack, from `vegeta encode --to csv` (timestamp, code, latency ns).

    The machine is shared: another tenant's burst stalls a few tens of requests, which is the whole of a
    run's p99 at 500 rps. The median over seconds says what the proxy does when it is not being preempted.
    """
    seconds: dict[int, list[int]] = {}
    for line in csv.splitlines():
        ts, _, latency = line.split(",", 3)[:3]
        seconds.setdefault(int(ts) // 1_000_000_000, []).append(int(latency))
    full = [sorted(v) for k, v in sorted(seconds.items())][1:-1]  # first and last second are partial
    return [v[min(len(v) - 1, int(len(v) * 0.99))] / 1e6 for v in full if len(v) >= 100]

