"""`abuse`: a well-behaved client's latency while other clients send ~1 MB junk bodies and 15k-row batches.

The server under test runs pinned to the server core. The well-behaved client is vegeta: an open loop at
a fixed rate of 1-row V2 requests, pinned to the load core. It runs twice, once alone ("idle") and once
while four abusive clients loop in their own process, also on the load core. Two of them send ~1 MB of
junk, two send 15,000-row V1 batches. The bar compares the well-behaved p99 under abuse with its idle p99,
in the same run. MLServer, measured the same way (it has no caps, so it predicts the batches), shows what
happens without admission control.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from tests.bench import vegeta_load
from tests.bench.common import LOAD_CORE, REPO, Unavailable, pinned, print_bars, ratio, table, write_results
from tests.bench.server import Server, Shape, mlserver_venv, predict_path, request_body, train_models

RATE = 200  # well-behaved requests per second: well under either server's max, so queueing is the abusers' doing
BIG_ROWS = 15_000
ABUSERS = ("junk", "junk", "batch", "batch")


def junk_body(seed: int) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(1_000_000)


def batch_body(features: int, protocol: str) -> bytes:
    """BIG_ROWS rows of one-digit values (about 0.4 MB for 13 features), V1 instances or one V2 tensor."""
    if protocol == "v2":
        data = ",".join("1" for _ in range(BIG_ROWS * features))
        return ('{"inputs":[{"name":"input-0","shape":[' + f"{BIG_ROWS},{features}" + '],"datatype":"FP64","data":['
                + data + "]}]}").encode()
    row = "[" + ",".join("1" for _ in range(features)) + "]"
    return ('{"instances":[' + ",".join([row] * BIG_ROWS) + "]}").encode()


def abuse(url: str, seconds: float, features: int, protocol: str) -> dict[str, dict[str, int]]:
    """The abusive clients (run in their own process): status counts per kind, 0 = no answer."""
    import http.client

    target = urllib.parse.urlsplit(url)
    bodies = {"junk": [junk_body(1), junk_body(2)], "batch": [batch_body(features, protocol)] * 2}
    counts: dict[str, dict[str, int]] = {kind: {} for kind in bodies}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def loop(kind: str, body: bytes) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        while time.monotonic() < end:
            try:
                conn.request("POST", target.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                code = str(response.status)
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                code = "0"
            with lock:
                counts[kind][code] = counts[kind].get(code, 0) + 1
        conn.close()

    threads = [threading.Thread(target=loop, args=(kind, bodies[kind][i % 2])) for i, kind in enumerate(ABUSERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def _abusers(url: str, seconds: float, features: int, protocol: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tests.bench.abuse", url, str(seconds), str(features), protocol]
    # niced: on the load core they must not delay vegeta's own sends and reads, which would show up as the
    # well-behaved client's latency although no server caused it
    return subprocess.Popen(["nice", "-n", "19", *pinned(LOAD_CORE, argv)], stdout=subprocess.PIPE, text=True, cwd=REPO)


def measure(server: Server, X, workdir: Path, duration: float, repeats: int) -> dict:
    shape = Shape("v2", 1)
    body_file = workdir / "good.json"
    body_file.write_bytes(request_body(X, shape))
    server.check(shape, body_file.read_bytes())
    vegeta = vegeta_load.ensure_vegeta()
    targets = vegeta_load.targets_file(workdir, f"good-{server.kind}", server.url + predict_path(server.name, shape),
                                       body_file)
    vegeta_load.attack(vegeta, targets, RATE, 2)  # warm-up
    idle, abused, codes = [], [], []
    protocol = "v2" if server.kind == "mlserver" else "v1"  # MLServer speaks V2 only: same rows as a tensor
    abuse_url = server.url + predict_path(server.name, Shape(protocol, 1))
    for _ in range(repeats):
        idle.append(vegeta_load.attack(vegeta, targets, RATE, duration))
        proc = _abusers(abuse_url, duration + 2, X.shape[1], protocol)
        time.sleep(1)  # the abusers are at it before the measured window opens
        abused.append(vegeta_load.attack(vegeta, targets, RATE, duration))
        out, _ = proc.communicate(timeout=duration + 120)
        codes.append(json.loads(out.strip().splitlines()[-1]))
    row = {"server": server.kind, "rate": RATE,
           "idle_p50_ms": statistics.median(a.p50_ms for a in idle), "idle_p99_ms": statistics.median(a.p99_ms for a in idle),
           "abused_p50_ms": statistics.median(a.p50_ms for a in abused),
           "abused_p99_ms": statistics.median(a.p99_ms for a in abused),
           "good_success": min(a.success for a in idle + abused), "abusive_codes": codes}
    print(f"  {server.kind:<8} idle p99 {row['idle_p99_ms']:7.2f} ms, abused p99 {row['abused_p99_ms']:7.2f} ms, "
          f"good success {row['good_success']:.3f}, abusers {codes[-1]}", flush=True)
    return row


def run(duration: float = 5.0, warmup: float = 2.0, repeats: int = 3) -> dict:
    del warmup  # one fixed warm-up attack per server
    started = time.monotonic()
    mlserver_python, unavailable = None, {}
    try:
        mlserver_python = mlserver_venv()
    except Unavailable as exc:
        unavailable["mlserver"] = str(exc)
    print(f"abuse benchmark: good client {RATE} rps 1-row V2 (vegeta, open loop) alone, then beside 2 junk (~1 MB) "
          f"and 2 {BIG_ROWS}-row batch clients; {repeats}x{duration:g}s, median", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        workdir = Path(tmp)
        model_files, X = train_models(workdir)
        for kind in ("ours", "mlserver"):
            if kind in unavailable:
                continue
            server = Server(kind, "wine-lr", model_files["wine-lr"], workdir, mlserver_python)
            try:
                server.wait_ready()
                rows.append(measure(server, X, workdir, duration, repeats))
            except Exception as exc:
                if kind == "ours":
                    raise
                unavailable[kind] = f"{type(exc).__name__}: {exc}"
            finally:
                server.stop()
    print("\n" + table(["server", "rate", "idle p50 ms", "idle p99 ms", "abused p50 ms", "abused p99 ms", "p99 x idle"],
                       [[r["server"], r["rate"], r["idle_p50_ms"], r["idle_p99_ms"], r["abused_p50_ms"],
                         r["abused_p99_ms"], ratio(r["abused_p99_ms"], r["idle_p99_ms"])] for r in rows]))
    for kind, why in unavailable.items():
        print(f"  {kind}: unavailable ({why})")
    ours = next((r for r in rows if r["server"] == "ours"), None)
    worse = ratio(ours and ours["abused_p99_ms"], ours and ours["idle_p99_ms"])
    bars = [{"bar": "well-behaved p99 under abuse <= 2x its idle p99", "ratio": worse,
             "met": None if worse is None else worse <= 2.0}]
    print_bars(bars)
    doc = {"rows": rows, "unavailable": unavailable, "bars": bars, "elapsed_s": time.monotonic() - started}
    print(f"  results: {write_results('abuse', doc)}")
    return doc


if __name__ == "__main__":  # the abusive clients' process: URL SECONDS FEATURES PROTOCOL
    print(json.dumps(abuse(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
