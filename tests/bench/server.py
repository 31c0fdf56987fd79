"""`server`: our model server vs stock kserve `ModelServer` vs MLServer 1.7.1 (+ mlserver-sklearn), in-process floor.

Each server runs in its own process pinned to core 0; wrk runs pinned to core 1. Per (server, model, request
shape): one warm-up run, then for each concurrency the median of `repeats` runs (wrk, closed loop). "paced" is
an open loop at a fixed 500 rps (vegeta, also on core 1): "p99 at 500 rps" with queueing in the tail.
MLServer speaks V2 only, so its V1 cell is absent.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from tests.bench import common, vegeta_load, wrk_load
from tests.bench.common import (
    REPO, SERVER_CORE, Unavailable, free_port, peer_venv, pinned, print_bars, process_tree_rss_mib, ratio, table,
    write_results,
)

SERVERS = ("ours", "kserve", "mlserver")
PACED = "paced"  # concurrency marker for the fixed-rate cell (vegeta, open loop)
PACED_RATE = 500


@dataclass(frozen=True)
class Shape:
    protocol: str  # v1 | v2
    rows: int

    @property
    def label(self) -> str:
        return f"{self.protocol.upper()} {self.rows}-row"


# The reduced matrix (full is 3 servers x 2 models x 3 shapes x 2 concurrencies ~ 10 min on 2 cores).
MATRIX: dict[str, list[tuple[Shape, list]]] = {
    "wine-lr": [(Shape("v2", 1), [1, 8, PACED]), (Shape("v2", 100), [8]), (Shape("v1", 1), [8])],
    "wine-rf": [(Shape("v2", 1), [8]), (Shape("v2", 100), [8])],
}


def train_models(workdir: Path) -> tuple[dict[str, Path], np.ndarray]:
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_wine(return_X_y=True)
    models = {"wine-lr": LogisticRegression(max_iter=10_000), "wine-rf": RandomForestClassifier(100, random_state=0)}
    paths = {}
    for name, est in models.items():
        est.fit(X, y)
        paths[name] = workdir / f"{name}.joblib"
        joblib.dump(est, paths[name])
    return paths, X


def request_body(X: np.ndarray, shape: Shape) -> bytes:
    rows = np.resize(X, (shape.rows, X.shape[1]))
    if shape.protocol == "v1":
        return json.dumps({"instances": rows.tolist()}).encode()
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def predict_path(name: str, shape: Shape) -> str:
    return f"/v1/models/{name}:predict" if shape.protocol == "v1" else f"/v2/models/{name}/infer"


# ------------------------------------------------------------------------------ servers under test
class Server:
    """One server process serving one model on a free loopback port, pinned to the server core."""

    def __init__(self, kind: str, name: str, model_file: Path, workdir: Path, mlserver_python: Path | None):
        self.kind, self.name, self.port = kind, name, free_port()
        self.log = (workdir / f"{kind}-{name}.log").open("wb")
        if kind == "mlserver":
            argv = [str(mlserver_python.parent / "mlserver"), "start", str(self._mlserver_repo(model_file, workdir))]
        else:
            argv = [sys.executable, "-m", "tests.bench.server_targets", kind, str(model_file), name, str(self.port)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=workdir, env=env, start_new_session=True)

    def _mlserver_repo(self, model_file: Path, workdir: Path) -> Path:
        repo = workdir / f"mlserver-{self.name}"
        (repo / self.name).mkdir(parents=True, exist_ok=True)
        (repo / self.name / "model.joblib").write_bytes(model_file.read_bytes())
        settings = {"host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(), "metrics_port": free_port(),
                    "parallel_workers": 0, "debug": False, "load_models_at_startup": True}
        (repo / "settings.json").write_text(json.dumps(settings))
        model_settings = {"name": self.name, "implementation": "mlserver_sklearn.SKLearnModel", "max_batch_size": 0,
                          "parameters": {"uri": "./model.joblib", "version": "v1"}}
        (repo / self.name / "model-settings.json").write_text(json.dumps(model_settings))
        return repo

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        common.wait_http_ok(self.proc, f"{self.url}/v2/models/{self.name}/ready", self.kind, self.log.name, timeout)

    def check(self, shape: Shape, body: bytes) -> None:
        """One request before loading: a benchmark of error responses would be meaningless."""
        req = urllib.request.Request(self.url + predict_path(self.name, shape), data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{self.kind} {shape.label}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        n = len(doc["predictions"]) if shape.protocol == "v1" else doc["outputs"][0]["shape"][0]
        if n != shape.rows:
            raise RuntimeError(f"{self.kind} {shape.label}: {n} predictions for {shape.rows} rows: {doc}")

    def stop(self) -> None:
        common.stop_group(self.proc, self.log)


# ------------------------------------------------------------------------------ floor
def floor(model_files: dict[str, Path], X: np.ndarray, budget_s: float = 1.0) -> list[dict]:
    """In-process `estimator.predict` on the server core: what no server can beat."""
    import warnings

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        return [row for name, path in model_files.items()
                for row in in_process("floor", name, joblib.load(path).predict, X, budget_s)]
    finally:
        os.sched_setaffinity(0, previous)


def in_process(server: str, name: str, predict, X: np.ndarray, budget_s: float) -> list[dict]:
    """Rows for `predict` called in this process on 1 and 100 rows: rate, p50, p99 (the caller pins the core)."""
    out = []
    for rows in (1, 100):
        x = np.resize(X, (rows, X.shape[1]))
        for _ in range(20):
            predict(x)
        lat, end = [], time.perf_counter() + budget_s
        while time.perf_counter() < end and len(lat) < 100_000:
            t0 = time.perf_counter()
            predict(x)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        out.append({"server": server, "model": name, "request": f"predict() {rows}-row", "c": 1,
                    "rps": 1 / statistics.fmean(lat), "p50_ms": lat[len(lat) // 2] * 1e3,
                    "p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "errors": 0})
    return out


# ------------------------------------------------------------------------------ the run
def _paced(attack: vegeta_load.Attack) -> wrk_load.WrkResult:
    return wrk_load.WrkResult(rps=attack.achieved_rps, p50_ms=attack.p50_ms, p99_ms=attack.p99_ms,
                              errors=round(attack.requests * (1 - attack.success)))


def measure(server: Server, X: np.ndarray, cells: list[tuple[Shape, list]], workdir: Path,
            duration: float, warmup: float, repeats: int) -> list[dict]:
    out = []
    for shape, concurrencies in cells:
        if server.kind == "mlserver" and shape.protocol == "v1":
            continue
        body_file = workdir / f"body-{shape.protocol}-{shape.rows}.json"
        body_file.write_bytes(request_body(X, shape))
        server.check(shape, body_file.read_bytes())
        url = server.url + predict_path(server.name, shape)
        closed = wrk_load.lua_script(body_file, None)
        wrk_load.run(url, closed, 8, warmup)
        vegeta = vegeta_load.ensure_vegeta() if PACED in concurrencies else None
        for c in concurrencies:
            if c == PACED:  # open loop at a fixed rate: queueing shows in the tail
                targets = vegeta_load.targets_file(workdir, "paced", url, body_file)
                runs = [_paced(vegeta_load.attack(vegeta, targets, PACED_RATE, duration)) for _ in range(repeats)]
            else:
                runs = [wrk_load.run(url, closed, c, duration) for _ in range(repeats)]
            out.append({"server": server.kind, "model": server.name, "request": shape.label, "c": c,
                        "rps": statistics.median(r.rps for r in runs), "p50_ms": statistics.median(r.p50_ms for r in runs),
                        "p99_ms": statistics.median(r.p99_ms for r in runs), "errors": sum(r.errors for r in runs),
                        "runs": [r.__dict__ for r in runs]})
            print(f"  {server.kind:<8} {server.name:<8} {shape.label:<11} c={c!s:<5} rps={out[-1]['rps']:8.1f} "
                  f"p50={out[-1]['p50_ms']:6.2f}ms p99={out[-1]['p99_ms']:6.2f}ms", flush=True)
        closed.unlink()
    return out


def mlserver_venv() -> Path:
    """MLServer's python: the one pinned peer every benchmark compares with (a cached venv; raises Unavailable)."""
    import sklearn

    return peer_venv("mlserver-venv", ["mlserver==1.7.1", "mlserver-sklearn==1.7.1",
                                       f"scikit-learn=={sklearn.__version__}"], timeout=600)


def mlserver_peer(unavailable: dict[str, str]) -> Path | None:
    """MLServer's python (a cached venv), or None with the reason recorded in ``unavailable``."""
    try:
        return mlserver_venv()
    except Unavailable as exc:
        unavailable["mlserver"] = str(exc)
        print(f"  MLServer unavailable: {exc}", flush=True)
        return None


def measure_servers(kinds, model_files: dict[str, Path], X: np.ndarray, matrix: dict[str, list], workdir: Path,
                    timing: tuple[float, float, int], mlserver_python: Path | None, unavailable: dict[str, str],
                    process_kind=lambda kind: kind) -> tuple[list[dict], list[dict]]:
    """(rows, rss) of every server kind on every model; a peer that fails is recorded in ``unavailable``.

    ``process_kind`` names the server_targets entry a kind runs (the label in the table stays ``kind``)."""
    rows: list[dict] = []
    rss: list[dict] = []
    for kind in kinds:
        if kind in unavailable:
            continue
        for name, path in model_files.items():
            spawned = time.monotonic()
            server = Server(process_kind(kind), name, path, workdir, mlserver_python)
            server.kind = kind
            try:
                server.wait_ready()
                ready_s = time.monotonic() - spawned  # cold start: process spawn to model ready (0.2 s polls)
                rows += measure(server, X, matrix[name], workdir, *timing)
                rss.append({"server": kind, "model": name, "rss_mib": process_tree_rss_mib(server.proc.pid),
                            "ready_s": round(ready_s, 2)})
            except Exception as exc:  # a peer that cannot start or answers wrongly is reported, not fatal
                if kind != "mlserver" and kind != "kserve" and not isinstance(exc, Unavailable):
                    raise
                unavailable[kind] = f"{type(exc).__name__}: {exc}"
                print(f"  {kind} unavailable: {exc}", flush=True)
                break
            finally:
                server.stop()
    return rows, rss


def run(duration: float = 5.0, warmup: float = 2.0, repeats: int = 3) -> dict:
    started = time.monotonic()
    wrk_load.ensure_wrk()
    print(f"server benchmark: servers on core {SERVER_CORE}, wrk on core 1; {warmup:g}s warm-up, "
          f"{repeats}x{duration:g}s per cell, median. Reduced matrix: LR V2 1-row at c=1/c=8/500rps fixed, "
          f"LR V2 100-row c=8, LR V1 1-row c=8, RF V2 1-row and 100-row c=8.", flush=True)
    unavailable: dict[str, str] = {}
    mlserver_python = mlserver_peer(unavailable)
    rows: list[dict] = []
    rss: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        workdir = Path(tmp)
        model_files, X = train_models(workdir)
        rows += floor(model_files, X)
        measured, rss = measure_servers(SERVERS, model_files, X, MATRIX, workdir, (duration, warmup, repeats),
                                        mlserver_python, unavailable)
        rows += measured
    doc = {"config": {"duration_s": duration, "warmup_s": warmup, "repeats": repeats,
                      "paced": f"vegeta open loop at {PACED_RATE} rps"},
           "rows": rows, "rss": rss, "unavailable": unavailable, "elapsed_s": time.monotonic() - started}
    doc["bars"] = report(rows, rss, unavailable)
    print(f"  results: {write_results('server', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc


def find_cell(rows: list[dict], server: str, model: str, request: str, c) -> dict | None:
    return next((r for r in rows if (r["server"], r["model"], r["request"], r["c"]) == (server, model, request, c)), None)


def print_rss(rss: list[dict]) -> dict[str, float]:
    """Print the RSS and cold-start table (each server's ratio to MLServer on the same model); returns MLServer's
    RSS per model."""
    peer_rss = {m["model"]: m["rss_mib"] for m in rss if m["server"] == "mlserver"}
    peer_ready = {m["model"]: m.get("ready_s") for m in rss if m["server"] == "mlserver"}
    print("\n" + table(["server", "model", "RSS MiB (after load)", "x MLS", "spawn -> ready s", "x MLS"],
                       [[m["server"], m["model"], round(m["rss_mib"], 1), ratio(m["rss_mib"], peer_rss.get(m["model"])),
                         m.get("ready_s"), ratio(m.get("ready_s"), peer_ready.get(m["model"]))] for m in rss]))
    return peer_rss


def worst_vs_mlserver(rss: list[dict], server: str, key: str) -> float | None:
    """The largest ratio of ``server``'s ``key`` (rss_mib, ready_s) to MLServer's over the models both ran."""
    peer = {m["model"]: m.get(key) for m in rss if m["server"] == "mlserver"}
    ratios = [ratio(m.get(key), peer.get(m["model"])) for m in rss if m["server"] == server]
    return max((r for r in ratios if r is not None), default=None)


def report(rows: list[dict], rss: list[dict], unavailable: dict[str, str]) -> list[dict]:
    headers = ["server", "model", "request", "c", "rps", "p50 ms", "p99 ms", "err", "rps x MLS", "p99 x MLS"]
    lines = []
    for r in rows:
        peer = find_cell(rows, "mlserver", r["model"], r["request"], r["c"])
        lines.append([r["server"], r["model"], r["request"], r["c"], round(r["rps"], 1), r["p50_ms"], r["p99_ms"],
                      r["errors"], ratio(r["rps"], peer and peer["rps"]), ratio(r["p99_ms"], peer and peer["p99_ms"])])
    print("\n" + table(headers, lines))
    print_rss(rss)
    for kind, why in unavailable.items():
        print(f"  {kind}: unavailable ({why})")

    def max_rate(server: str) -> float | None:
        ok = [r["rps"] for r in rows if r["server"] == server and r["model"] == "wine-lr" and r["request"] == "V2 1-row"
              and r["c"] in (1, 8) and r["p99_ms"] <= 10.0 and not r["errors"]]
        return max(ok) if ok else None

    paced = {s: find_cell(rows, s, "wine-lr", "V2 1-row", PACED) for s in SERVERS}
    rate = ratio(max_rate("ours"), max_rate("mlserver"))
    p99 = ratio(paced["ours"] and paced["ours"]["p99_ms"], paced["mlserver"] and paced["mlserver"]["p99_ms"])
    mem, cold = worst_vs_mlserver(rss, "ours", "rss_mib"), worst_vs_mlserver(rss, "ours", "ready_s")
    bars = [
        {"bar": "max rate (p99<=10ms, LR V2 1-row, best of c=1/c=8) >= 1.5x MLServer", "ratio": rate,
         "met": None if rate is None else rate >= 1.5},
        {"bar": "p99 at 500 rps fixed rate (LR V2 1-row) <= 0.8x MLServer", "ratio": p99, "met": None if p99 is None else p99 <= 0.8},
        {"bar": "RSS (worst model) <= 0.8x MLServer", "ratio": mem, "met": None if mem is None else mem <= 0.8},
        {"bar": "cold start, spawn to ready (worst model) <= 1.5x MLServer", "ratio": cold,
         "met": None if cold is None else cold <= 1.5},
    ]
    print_bars(bars)
    return bars
