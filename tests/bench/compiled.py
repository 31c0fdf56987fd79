"""`compiled`: our server running the compiled (ONNX) form vs the same server on scikit-learn vs MLServer, with
the in-process floors (scikit-learn `predict()` and onnxruntime `run()`), all in one run.

Models (wine): RandomForest(100), GradientBoosting(100), LogisticRegression. Each is converted exactly as the
training Job converts it (`runtime.train_compile.compile_model`: skl2onnx, then checked on held-out rows),
and the conversion time is reported next to the fit time. Servers are pinned to core 0 (so the compiled
form gets one intra-op thread, as in a pod limited to one core), wrk to core 1; V2 requests of 1 and 100
rows; closed loop at c=1 and c=8 (1 row) and c=8 (100 rows), the median of `repeats` runs after a warm-up.

"Max rate" is the best of c=1/c=8 without errors (a forest's p99 on MLServer exceeds any small bound, so
no latency cap is applied here). Targets, printed as ratios: RandomForest 1-row max rate >= 10x MLServer;
LogisticRegression >= 3x MLServer; compiled never slower than our scikit-learn serving (every cell); RSS
with the compiled model <= 0.8x MLServer's.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

from tests.bench import wrk_load
from tests.bench.common import SERVER_CORE, print_bars, ratio, table, write_results
from tests.bench.server import (Shape, find_cell, floor, in_process, measure_servers, mlserver_peer, print_rss,
                                worst_vs_mlserver)

SERVERS = ("compiled", "ours", "mlserver")
CELLS = [(Shape("v2", 1), [1, 8]), (Shape("v2", 100), [8])]


def train_and_compile(workdir: Path) -> tuple[dict[str, Path], np.ndarray, list[dict]]:
    """Fit each model, convert it as the trainer does; the ONNX bytes go next to the joblib (`<name>.onnx`)."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from mlops_operator.runtime.train_compile import compile_model

    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    estimators = {"wine-rf": RandomForestClassifier(100, random_state=0),
                  "wine-gb": GradientBoostingClassifier(n_estimators=100, random_state=0),
                  "wine-lr": LogisticRegression(max_iter=10_000)}
    compile_model(estimators["wine-lr"].fit(X_train, y_train), X_test)  # imports once, outside the timings
    paths, overhead = {}, []
    for name, est in estimators.items():
        t0 = time.perf_counter()
        est.fit(X_train, y_train)
        fit_s = time.perf_counter() - t0
        compiled = compile_model(est, X_test)
        if compiled.onnx is None:
            raise RuntimeError(f"{name} did not compile: {compiled.report}")
        paths[name] = workdir / f"{name}.joblib"
        joblib.dump(est, paths[name])
        paths[name].with_suffix(".onnx").write_bytes(compiled.onnx)
        overhead.append({"model": name, "fit_s": fit_s, "conversion_s": compiled.report["conversionSeconds"],
                         "onnx_bytes": len(compiled.onnx), "joblib_bytes": paths[name].stat().st_size,
                         "max_difference": compiled.report["maxDifference"], "input": compiled.report["inputType"]})
    return paths, X, overhead


def onnx_floor(model_files: dict[str, Path], X: np.ndarray, budget_s: float = 1.0) -> list[dict]:
    """In-process compiled `predict` on the server core, one thread: the compiled server's floor."""
    from mlops_operator.runtime.serve_compiled import CompiledPredictor

    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        return [row for name, path in model_files.items()
                for row in in_process("floor-onnx", name, CompiledPredictor(
                    path.with_suffix(".onnx").read_bytes(), joblib.load(path).classes_, 1).predict, X, budget_s)]
    finally:
        os.sched_setaffinity(0, previous)


def run(duration: float = 5.0, warmup: float = 2.0, repeats: int = 3) -> dict:
    started = time.monotonic()
    wrk_load.ensure_wrk()
    print(f"compiled benchmark: servers on core {SERVER_CORE}, wrk on core 1; {warmup:g}s warm-up, "
          f"{repeats}x{duration:g}s per cell, median. V2 1-row c=1/c=8, V2 100-row c=8; RF(100), GB(100), LR.",
          flush=True)
    unavailable: dict[str, str] = {}
    mlserver_python = mlserver_peer(unavailable)
    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as tmp:
        workdir = Path(tmp)
        model_files, X, overhead = train_and_compile(workdir)
        rows = floor(model_files, X) + onnx_floor(model_files, X)
        measured, rss = measure_servers(SERVERS, model_files, X, {name: CELLS for name in model_files}, workdir,
                                        (duration, warmup, repeats), mlserver_python, unavailable,
                                        lambda kind: "ours-compiled" if kind == "compiled" else kind)
        rows += measured
    doc = {"config": {"duration_s": duration, "warmup_s": warmup, "repeats": repeats},
           "rows": rows, "rss": rss, "conversion": overhead, "unavailable": unavailable,
           "elapsed_s": time.monotonic() - started}
    doc["bars"] = report(rows, rss, overhead, unavailable)
    print(f"  results: {write_results('compiled', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc


def max_rate(rows: list[dict], server: str, model: str) -> float | None:
    ok = [r["rps"] for r in rows if (r["server"], r["model"], r["request"]) == (server, model, "V2 1-row")
          and r["c"] in (1, 8) and not r["errors"]]
    return max(ok) if ok else None


def report(rows: list[dict], rss: list[dict], overhead: list[dict], unavailable: dict[str, str]) -> list[dict]:
    headers = ["server", "model", "request", "c", "rps", "p50 ms", "p99 ms", "err", "rps x MLS", "rps x ours-sklearn"]
    lines = []
    for r in rows:
        mls = find_cell(rows, "mlserver", r["model"], r["request"], r["c"])
        plain = find_cell(rows, "ours", r["model"], r["request"], r["c"])
        lines.append([r["server"], r["model"], r["request"], r["c"], round(r["rps"], 1), r["p50_ms"], r["p99_ms"],
                      r["errors"], ratio(r["rps"], mls and mls["rps"]), ratio(r["rps"], plain and plain["rps"])])
    print("\n" + table(headers, lines))
    print_rss(rss)
    print("\n" + table(["model", "fit s", "conversion + check s", "x fit", "onnx KiB", "joblib KiB", "max diff", "inputs"],
                       [[o["model"], round(o["fit_s"], 3), o["conversion_s"], ratio(o["conversion_s"], o["fit_s"]),
                         round(o["onnx_bytes"] / 1024, 1), round(o["joblib_bytes"] / 1024, 1), o["max_difference"],
                         o["input"]] for o in overhead]))
    for kind, why in unavailable.items():
        print(f"  {kind}: unavailable ({why})")

    def vs_mlserver(model: str) -> float | None:
        return ratio(max_rate(rows, "compiled", model), max_rate(rows, "mlserver", model))

    slower = [(r["model"], r["request"], r["c"]) for r in rows if r["server"] == "compiled"
              and (plain := find_cell(rows, "ours", r["model"], r["request"], r["c"])) and r["rps"] < plain["rps"]]
    mem, cold = worst_vs_mlserver(rss, "compiled", "rss_mib"), worst_vs_mlserver(rss, "compiled", "ready_s")
    rf, lr, gb = vs_mlserver("wine-rf"), vs_mlserver("wine-lr"), vs_mlserver("wine-gb")
    bars = [
        {"bar": "RandomForest(100) V2 1-row max rate >= 10x MLServer", "ratio": rf, "met": None if rf is None else rf >= 10},
        {"bar": "LogisticRegression V2 1-row max rate >= 3x MLServer", "ratio": lr, "met": None if lr is None else lr >= 3},
        {"bar": "GradientBoosting V2 1-row max rate vs MLServer (no target; shown)", "ratio": gb, "met": None},
        {"bar": f"compiled never slower than our sklearn serving (cells slower: {slower or 'none'})",
         "ratio": None, "met": not slower if any(r["server"] == "compiled" for r in rows) else None},
        {"bar": "RSS with the compiled model <= 0.8x MLServer (worst model)", "ratio": mem,
         "met": None if mem is None else mem <= 0.8},
        {"bar": "cold start with the compiled model, spawn to ready (worst model) <= 1.5x MLServer", "ratio": cold,
         "met": None if cold is None else cold <= 1.5},
    ]
    print_bars(bars)
    return bars
