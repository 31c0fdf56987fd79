"""`rates`: latency against offered rate, ours vs MLServer, at 25/50/75/90 % of MLServer's max rate.

For each model (LogisticRegression, RandomForest(100), wine data) and request (1 and 100 rows), MLServer's
max rate is its closed-loop throughput (wrk, 8 connections) on the V2 request. Both servers are then driven
by an open loop (vegeta) at fixed fractions of that rate: MLServer with V2, ours with V2 and V1 (MLServer
has no V1, so our V1 is compared with its V2 at the same rate). Servers run pinned to the server core and
the load generators to the load core. The plot (`--plot`, matplotlib) goes to docs/images/bench-rates.png.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import vegeta_load, wrk_load
from tests.bench.common import REPO, Unavailable, print_bars, ratio, table, write_results
from tests.bench.server import Server, Shape, mlserver_venv, predict_path, request_body, train_models

FRACTIONS = (0.25, 0.50, 0.75, 0.90)
SHAPES = (Shape("v2", 1), Shape("v1", 1), Shape("v2", 100), Shape("v1", 100))
PLOT = REPO / "docs" / "images" / "bench-rates.png"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{model}, {len(__import__('os').sched_getaffinity(0))} cores, Linux {platform.release()}"


def _body(workdir: Path, X, shape: Shape) -> Path:
    path = workdir / f"rates-{shape.protocol}-{shape.rows}.json"
    path.write_bytes(request_body(X, shape))
    return path


def max_rate(server: Server, X, shape: Shape, workdir: Path, duration: float) -> float:
    body = _body(workdir, X, shape)
    server.check(shape, body.read_bytes())
    script = wrk_load.lua_script(body, None)
    try:
        url = server.url + predict_path(server.name, shape)
        wrk_load.run(url, script, 8, 2)
        return wrk_load.run(url, script, 8, duration).rps
    finally:
        script.unlink()


def paced(server: Server, X, shape: Shape, rate: int, workdir: Path, duration: float, repeats: int) -> dict:
    body = _body(workdir, X, shape)
    server.check(shape, body.read_bytes())
    vegeta = vegeta_load.ensure_vegeta()
    targets = vegeta_load.targets_file(workdir, f"{server.kind}-{shape.protocol}-{shape.rows}-{rate}",
                                       server.url + predict_path(server.name, shape), body)
    runs = [vegeta_load.attack(vegeta, targets, rate, duration) for _ in range(repeats)]
    return {"p50_ms": statistics.median(r.p50_ms for r in runs), "p99_ms": statistics.median(r.p99_ms for r in runs),
            "success": min(r.success for r in runs), "achieved_rps": statistics.median(r.achieved_rps for r in runs)}


def run(duration: float = 5.0, warmup: float = 2.0, repeats: int = 3, plot: bool = True) -> dict:
    del warmup  # each server gets a 2 s closed-loop warm-up per request shape
    started = time.monotonic()
    try:
        mlserver_python = mlserver_venv()
    except Unavailable as exc:
        print(f"  MLServer unavailable ({exc}): no reference rates, nothing to measure")
        return {}
    where = machine()
    print(f"rates benchmark on {where}: open loop at {', '.join(f'{f:.0%}' for f in FRACTIONS)} of MLServer's max "
          f"rate; {repeats}x{duration:g}s per cell, median", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-rates-") as tmp:
        workdir = Path(tmp)
        model_files, X = train_models(workdir)
        for name, path in model_files.items():
            peer = Server("mlserver", name, path, workdir, mlserver_python)
            references: dict[int, float] = {}
            try:
                peer.wait_ready()
                for rows_per_request in (1, 100):
                    references[rows_per_request] = max_rate(peer, X, Shape("v2", rows_per_request), workdir, duration)
                    for fraction in FRACTIONS:
                        rate = max(1, round(references[rows_per_request] * fraction))
                        cell = paced(peer, X, Shape("v2", rows_per_request), rate, workdir, duration, repeats)
                        rows.append({"server": "mlserver", "model": name, "request": f"V2 {rows_per_request}-row",
                                     "fraction": fraction, "rate": rate, **cell})
                        print(f"  mlserver {name} V2 {rows_per_request}-row {fraction:.0%} ({rate} rps): "
                              f"p99 {cell['p99_ms']:.2f} ms", flush=True)
            finally:
                peer.stop()
            ours = Server("ours", name, path, workdir, None)
            try:
                ours.wait_ready()
                for shape in SHAPES:
                    for fraction in FRACTIONS:
                        rate = max(1, round(references[shape.rows] * fraction))
                        cell = paced(ours, X, shape, rate, workdir, duration, repeats)
                        rows.append({"server": "ours", "model": name, "request": shape.label, "fraction": fraction,
                                     "rate": rate, **cell})
                        print(f"  ours     {name} {shape.label} {fraction:.0%} ({rate} rps): p99 {cell['p99_ms']:.2f} ms",
                              flush=True)
            finally:
                ours.stop()
    bars = report(rows)
    doc = {"machine": where, "fractions": FRACTIONS, "rows": rows, "bars": bars,
           "elapsed_s": time.monotonic() - started}
    if plot:
        draw(rows, where)
        doc["plot"] = str(PLOT.relative_to(REPO))
    print(f"  results: {write_results('rates', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc


def report(rows: list[dict]) -> list[dict]:
    def peer_of(r: dict) -> dict | None:
        want = ("mlserver", r["model"], "V2 " + r["request"].split(" ", 1)[1], r["fraction"])
        return next((p for p in rows if (p["server"], p["model"], p["request"], p["fraction"]) == want), None)

    lines, worst = [], None
    for r in rows:
        peer = peer_of(r) if r["server"] == "ours" else None
        x = ratio(r["p99_ms"], peer and peer["p99_ms"])
        lines.append([r["server"], r["model"], r["request"], f"{r['fraction']:.0%}", r["rate"], r["p50_ms"], r["p99_ms"],
                      round(r["success"], 4), x])
        if x is not None and r["fraction"] <= 0.75:
            worst = x if worst is None else max(worst, x)
    print("\n" + table(["server", "model", "request", "of MLS max", "rps", "p50 ms", "p99 ms", "ok", "p99 x MLS"], lines))
    bars = [{"bar": "p99 <= 0.8x MLServer at every rate up to 75 % of its max (worst cell)", "ratio": worst,
             "met": None if worst is None else worst <= 0.8}]
    print_bars(bars)
    return bars


def draw(rows: list[dict], where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    sizes = (1, 100)
    fig, axes = plt.subplots(len(models), len(sizes), figsize=(11, 4 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            for server, protocol, style in (("ours", "V2", "o-"), ("ours", "V1", "s--"), ("mlserver", "V2", "^-")):
                cells = sorted((r for r in rows if r["server"] == server and r["model"] == model
                                and r["request"] == f"{protocol} {size}-row"), key=lambda r: r["rate"])
                if cells:
                    ax.plot([c["rate"] for c in cells], [c["p99_ms"] for c in cells], style,
                            label=f"{'mlops-serve' if server == 'ours' else 'MLServer'} {protocol}")
            ax.set_title(f"{model}, {size}-row requests")
            ax.set_xlabel("offered rate (requests/s, open loop)")
            ax.set_ylabel("p99 latency (ms)")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle(f"p99 latency vs rate at 25/50/75/90 % of MLServer's max rate ({where})", fontsize=9)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    plt.close(fig)
    print(f"  plot: {PLOT}")
