"""`router`: `mlops-route` (90/10 split + 100 % shadow) vs nginx (`split_clients` + `mirror`) vs direct, at fixed rates.

Placement (2 cores): the proxy under test, `mlops-route` or nginx, is alone on core 0; vegeta (open-loop,
fixed rate) and every upstream share core 1. The upstreams of the latency and split cells are static nginx
responders answering the real `mlops-serve` V2 response for the request (captured at start): three Python
model servers at 1000 + 1000 mirrored rps would need a core of their own that this machine does not have,
and with them saturated the tails would measure the model servers' queue instead of the proxy. "Added" is
then the proxy's own cost: p50/p99 through it minus p50/p99 direct to the stable upstream, paired per repeat
(direct, router and nginx interleaved), median over repeats.

Split accuracy: 100k requests through each proxy (vegeta, closed loop), counted by the upstreams themselves.
Degraded shadow: the real `mlops-serve` as the shadow, healthy / `MLOPS_FAULT=error` / `MLOPS_FAULT=slow:0.05`,
primary p99 at 500 rps relative to the healthy-shadow p99 of the same proxy; the router switches shadow by
`PUT /-/config` (as the operator does), nginx has one listen port per shadow. These shadows also run on the
load core, so a healthy shadow's CPU competes with vegeta and the primaries there (reported, not corrected).
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import joblib

from tests.bench import vegeta_load as load
from tests.bench import router_procs as procs
from tests.bench.common import LOAD_CORE, SERVER_CORE, free_port, ratio, write_results
from tests.bench.router_backend import write_version
from tests.bench.router_report import report

MODEL, VERSION = "wine", "wine-v1"
PATH = f"/v2/models/{MODEL}/infer"
RATES = (500, 1000)
CANDIDATE_PERCENT = 10
SPLIT_REQUESTS = 100_000
DEGRADED_RATE = 500
SPLIT_WORKERS = 16  # closed loop: as fast as each proxy goes, never past it (4-7k/s for either here)
SHADOW_FAULTS = {"healthy": "", "failing": "error", "slow": "slow:0.05"}
# One round of degraded cells per proxy. The router's healthy cell comes twice, bracketing the degraded ones:
# their pooled median is the reference (no drift bias from position), and second-vs-first is an A/A ratio,
# the noise floor the 1.05x bar has to be read against. After the slow cell the router's shadow queue
# (256 copies, 4 workers, 50 ms each) takes ~3.2 s to drain, dropping new copies meanwhile: DRAIN_S
# keeps that out of the next healthy cell.
ROUNDS = {"router": ("healthy", "failing", "slow", "healthy"), "nginx": ("healthy", "failing", "slow")}
DRAIN_S = 4.0
PROXIES = ("router", "nginx")


def _model_and_body(workdir: Path) -> tuple[bytes, Path]:
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    X, y = load_wine(return_X_y=True)
    buf = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=10_000).fit(X, y), buf)
    body = workdir / "body.json"
    body.write_text(json.dumps({"inputs": [{"name": "input-0", "shape": [1, 13], "datatype": "FP64", "data": X[0].tolist()}]}))
    return buf.getvalue(), body


def _post(url: str, body_file: Path) -> tuple[int, bytes]:
    req = urllib.request.Request(url + PATH, data=body_file.read_bytes(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _config(generation: int, stable: procs.Proc, candidate: procs.Proc, shadow: procs.Proc) -> dict:
    return {"generation": generation, "model": MODEL,
            "stable": {"url": stable.url, "version": VERSION},
            "candidate": {"url": candidate.url, "version": VERSION, "weight": CANDIDATE_PERCENT},
            "shadow": {"url": shadow.url, "version": VERSION, "percent": 100}}


class Bed:
    """Every process of the run, started once: upstreams on the load core, the proxies on the server core."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.all: list[procs.Proc] = []
        try:
            self._start()
        except BaseException:  # whatever started must not outlive a failed start (or a Ctrl-C)
            self.stop()
            raise

    def _start(self) -> None:
        workdir = self.workdir
        model_bytes, self.body = _model_and_body(workdir)
        root = workdir / "store"
        prefix = write_version(root, MODEL, VERSION, {"model.joblib": model_bytes})
        self.serve = {state: self._add(procs.backend(f"shadow-{state}", MODEL, VERSION, prefix, root, workdir, LOAD_CORE, fault))
                      for state, fault in SHADOW_FAULTS.items()}
        for proc in self.serve.values():
            proc.wait_ready("/v2/health/ready")
        status, answer = _post(self.serve["healthy"].url, self.body)
        if status != 200 or b"outputs" not in answer:
            raise RuntimeError(f"mlops-serve answered {status}: {answer[:300]!r}")
        static = answer.decode()
        self.static = {name: self._add(procs.static_backend(name, workdir, LOAD_CORE, static))
                       for name in ("stable", "candidate", "shadow")}
        self.generation = 1
        self.router = self._add(procs.router(workdir, SERVER_CORE, _config(1, self.static["stable"], self.static["candidate"],
                                                                           self.static["shadow"])))
        shadows = {free_port(): self.static["shadow"].port, **{free_port(): p.port for p in self.serve.values()}}
        self.nginx = self._add(procs.nginx_proxy(workdir, SERVER_CORE, self.static["stable"].port,
                                                 self.static["candidate"].port, shadows, CANDIDATE_PERCENT))
        self.nginx_ports = dict(zip(["static", *self.serve], shadows))
        for proc in [*self.static.values(), self.nginx]:
            proc.wait_ready("/-/ready")
        self.router.wait_ready("/-/ready")
        for name, url in self.urls().items():
            status, answer = _post(url, self.body)
            if status != 200 or answer != static.encode():
                raise RuntimeError(f"{name} answered {status}: {answer[:300]!r}")

    def _add(self, proc: procs.Proc) -> procs.Proc:
        self.all.append(proc)
        return proc

    def urls(self, shadow: str = "static") -> dict[str, str]:
        return {"direct": self.static["stable"].url, "router": self.router.url,
                "nginx": f"http://127.0.0.1:{self.nginx_ports[shadow]}"}

    def router_shadow(self, shadow: str) -> None:
        """Point the router's shadow at `shadow` (static or a serve state) the way the operator does: PUT."""
        target = self.static["shadow"] if shadow == "static" else self.serve[shadow]
        self.generation += 1
        answer = procs.put_config(self.router.url, _config(self.generation, self.static["stable"], self.static["candidate"], target))
        if not answer.get("applied"):
            raise RuntimeError(f"router refused the config: {answer}")

    def stop(self) -> None:
        for proc in reversed(self.all):
            proc.stop()


def _targets(bed: Bed, shadow: str = "static") -> dict[str, Path]:
    return {name: load.targets_file(bed.workdir, f"{name}-{shadow}", url + PATH, bed.body) for name, url in bed.urls(shadow).items()}


def _cell(runs: list[load.Attack]) -> dict:
    seconds = [p for r in runs for p in r.second_p99_ms]
    return {"p50_ms": statistics.median(r.p50_ms for r in runs), "p99_ms": statistics.median(r.p99_ms for r in runs),
            "steady_p99_ms": statistics.median(seconds) if seconds else None,
            "achieved_rps": statistics.median(r.achieved_rps for r in runs), "success": min(r.success for r in runs),
            "runs": [r.__dict__ for r in runs]}


def latency_cells(bed: Bed, vegeta: Path, duration: float, warmup: float, repeats: int) -> list[dict]:
    """Per rate: a warm-up of each path, then `repeats` rounds of direct / router / nginx back to back."""
    targets = _targets(bed)
    rows = []
    for rate in RATES:
        for target in targets.values():
            load.attack(vegeta, target, rate, warmup)
        runs: dict[str, list[load.Attack]] = {name: [] for name in targets}
        for _ in range(repeats):
            for name, target in targets.items():
                runs[name].append(load.attack(vegeta, target, rate, duration))
        for name in targets:
            cell = {"rate": rate, "path": name, **_cell(runs[name])}
            if name != "direct":  # paired with the direct run of the same round
                cell["added_p50_ms"] = statistics.median(a.p50_ms - d.p50_ms for a, d in zip(runs[name], runs["direct"]))
                cell["added_p99_ms"] = statistics.median(a.p99_ms - d.p99_ms for a, d in zip(runs[name], runs["direct"]))
                direct_steady = next(r for r in rows if r["rate"] == rate and r["path"] == "direct")["steady_p99_ms"]
                cell["added_steady_p99_ms"] = cell["steady_p99_ms"] - direct_steady
            rows.append(cell)
            print(f"  {rate:>5} rps  {name:<7} p50={cell['p50_ms']:7.3f}ms p99={cell['p99_ms']:8.3f}ms "
                  f"added p99={cell.get('added_p99_ms', 0):7.3f}ms ok={cell['success']:.4f}", flush=True)
    return rows


def split_cells(bed: Bed, vegeta: Path) -> list[dict]:
    """SPLIT_REQUESTS through each proxy; the stable and candidate upstreams count what they got."""
    rows = []
    for name in PROXIES:
        before = {v: procs.static_requests(bed.static[v].url) for v in ("stable", "candidate")}
        routed_before = procs.router_counts(bed.router.url) if name == "router" else {}
        attack = load.counted(vegeta, bed.workdir, bed.urls()[name] + PATH, bed.body, SPLIT_REQUESTS, SPLIT_WORKERS)
        # stub_status counts its own requests: the "before" reading is inside the window, hence - 1
        got = {v: procs.static_requests(bed.static[v].url) - before[v] - 1 for v in ("stable", "candidate")}
        total = got["stable"] + got["candidate"]
        share = got["candidate"] / total if total else float("nan")
        row = {"proxy": name, "sent": attack.requests, "requests": total, **got, "candidate_share": share,
               "error_rel": abs(share / (CANDIDATE_PERCENT / 100) - 1), "error_pp": abs(share - CANDIDATE_PERCENT / 100) * 100,
               "success": attack.success, "rps": attack.achieved_rps, "errors": attack.errors}
        if name == "router":
            after = procs.router_counts(bed.router.url)
            row["router_counters"] = {v: after.get(v, 0) - routed_before.get(v, 0) for v in ("stable", "candidate", "shadow")}
        rows.append(row)
        print(f"  split via {name:<6}: {total} requests at {attack.achieved_rps:.0f}/s, candidate {share:.4%} "
              f"(error {row['error_rel']:.2%} of the weight), ok={attack.success:.4f}", flush=True)
    return rows


def degraded_cells(bed: Bed, vegeta: Path, duration: float, warmup: float, repeats: int) -> tuple[list[dict], dict | None]:
    """Primary latency at DEGRADED_RATE per proxy while the shadow is healthy, failing or slow (interleaved
    rounds, the first one a warm-up). Returns the rows and the router's A/A ratio (healthy vs healthy)."""
    targets = {state: _targets(bed, state) for state in SHADOW_FAULTS}
    runs: dict[tuple[str, str], list[load.Attack]] = {}
    received: dict[tuple[str, str], list[int]] = {}
    for rnd in range(repeats + 1):
        for proxy in PROXIES:
            for position, state in enumerate(ROUNDS[proxy]):
                if proxy == "router":
                    if position and ROUNDS[proxy][position - 1] == "slow":
                        time.sleep(DRAIN_S)
                    bed.router_shadow(state)
                before = procs.requests_total(bed.serve[state].url)
                attack = load.attack(vegeta, targets[state][proxy], DEGRADED_RATE, duration if rnd else warmup)
                if rnd:
                    key = (proxy, state if position < 3 else "healthy-again")
                    runs.setdefault(key, []).append(attack)
                    received.setdefault(key, []).append(procs.requests_total(bed.serve[state].url) - before)
    bed.router_shadow("static")
    aa = None
    if ("router", "healthy-again") in runs:
        first, again = runs[("router", "healthy")], runs.pop(("router", "healthy-again"))
        aa = {"p99": ratio(statistics.median(a.p99_ms for a in again), statistics.median(a.p99_ms for a in first)),
              "steady_p99": ratio(statistics.median(p for a in again for p in a.second_p99_ms),
                                  statistics.median(p for a in first for p in a.second_p99_ms))}
        runs[("router", "healthy")] = first + again
        received[("router", "healthy")] += received.pop(("router", "healthy-again"))
    rows = []
    for (proxy, state), attacks in runs.items():
        cell = {"proxy": proxy, "shadow": state, "rate": DEGRADED_RATE, **_cell(attacks),
                "shadow_received_per_s": statistics.median(received[(proxy, state)]) / duration}
        rows.append(cell)
    for row in rows:
        healthy = next(r for r in rows if r["proxy"] == row["proxy"] and r["shadow"] == "healthy")
        row["p99_x_healthy"] = ratio(row["p99_ms"], healthy["p99_ms"])
        row["steady_p99_x_healthy"] = ratio(row["steady_p99_ms"], healthy["steady_p99_ms"])
        print(f"  {row['proxy']:<6} shadow {row['shadow']:<7} p50={row['p50_ms']:7.3f}ms p99={row['p99_ms']:8.3f}ms "
              f"(x{row['p99_x_healthy']:.2f}) ok={row['success']:.4f} shadow got {row['shadow_received_per_s']:.0f}/s", flush=True)
    if aa is not None:
        print(f"  router A/A (healthy shadow, second vs first cell of each round): p99 x{aa['p99']:.2f}, "
              f"steady p99 x{aa['steady_p99']:.2f}", flush=True)
    return rows, aa


MIN_DURATION = 3.0  # steady p99 is the median of per-second p99s: it needs whole seconds


def run(duration: float = 5.0, warmup: float = 2.0, repeats: int = 3) -> dict:
    started = time.monotonic()
    duration = max(duration, MIN_DURATION)
    vegeta = load.ensure_vegeta()
    print(f"router benchmark: proxies on core {SERVER_CORE}; vegeta and upstreams on core {LOAD_CORE}; "
          f"{warmup:g}s warm-up, {repeats}x{duration:g}s per cell, median. Split {100 - CANDIDATE_PERCENT}/{CANDIDATE_PERCENT} "
          f"+ 100% shadow.", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        bed = Bed(Path(tmp))
        try:
            latency = latency_cells(bed, vegeta, duration, warmup, repeats)
            split = split_cells(bed, vegeta)
            degraded, aa = degraded_cells(bed, vegeta, duration, warmup, repeats)
        finally:
            bed.stop()
    doc = {"config": {"duration_s": duration, "warmup_s": warmup, "repeats": repeats, "rates": RATES,
                      "split": f"{100 - CANDIDATE_PERCENT}/{CANDIDATE_PERCENT}", "shadow_percent": 100,
                      "split_requests": SPLIT_REQUESTS, "split_workers": SPLIT_WORKERS, "degraded_rate": DEGRADED_RATE,
                      "shadow_faults": SHADOW_FAULTS, "degraded_rounds": ROUNDS,
                      "placement": {"proxy_core": SERVER_CORE, "load_and_upstreams_core": LOAD_CORE},
                      "vegeta": load.VEGETA_VERSION},
           "latency": latency, "split": split, "degraded": degraded, "degraded_aa_ratios": aa,
           "elapsed_s": time.monotonic() - started}
    doc["bars"] = report(latency, split, degraded, aa)
    print(f"  results: {write_results('router', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc
