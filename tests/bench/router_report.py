"""The router benchmark's tables and bars (docs/benchmarks.md, row "router"); informational, never assertions."""

from __future__ import annotations

from tests.bench.common import bar_line, ratio, table

ADDED_P99_MS, VS_NGINX, SPLIT_ERROR, DEGRADED = 1.0, 1.5, 0.01, 1.05


def _bar(text: str, value: float | None, met: bool | None) -> dict:
    return {"bar": text, "value": value, "met": met}


def report(latency: list[dict], split: list[dict], degraded: list[dict], aa: dict | None) -> list[dict]:
    print("\n" + table(
        ["rate", "path", "p50 ms", "p99 ms", "p99 per run", "added p50", "added p99", "added p99 x nginx", "steady p99",
         "added steady p99", "ok", "rps"],
        [[r["rate"], r["path"], r["p50_ms"], r["p99_ms"], _spread(r), r.get("added_p50_ms"), r.get("added_p99_ms"),
          ratio(r.get("added_p99_ms"), _added(latency, r["rate"], "nginx")) if r["path"] == "router" else None,
          r["steady_p99_ms"], r.get("added_steady_p99_ms"), round(r["success"], 4), round(r["achieved_rps"])]
         for r in latency]))
    print("\n" + table(
        ["split via", "rps", "requests", "stable", "candidate", "candidate %", "error (of 10%)", "error pp", "ok"],
        [[s["proxy"], round(s["rps"]), s["requests"], s["stable"], s["candidate"], round(s["candidate_share"] * 100, 3),
          f"{s['error_rel']:.2%}", round(s["error_pp"], 3), round(s["success"], 4)] for s in split]))
    print("\n" + table(
        ["proxy", "shadow", "rate", "p50 ms", "p99 ms", "p99 per run", "p99 x healthy", "steady p99", "steady x healthy",
         "ok", "shadow got /s"],
        [[d["proxy"], d["shadow"], d["rate"], d["p50_ms"], d["p99_ms"], _spread(d), d["p99_x_healthy"], d["steady_p99_ms"],
          d["steady_p99_x_healthy"], round(d["success"], 4), round(d["shadow_received_per_s"])] for d in degraded]))
    print("  (ms; steady p99 = median over all 1-s windows of their p99: what a proxy does between other tenants' bursts)")
    bars = []
    for rate in sorted({r["rate"] for r in latency}):
        ours, peer = _added(latency, rate, "router"), _added(latency, rate, "nginx")
        bars.append(_bar(f"added p99 at {rate} rps <= {ADDED_P99_MS:g} ms [{ours:.3f} ms]", ours, ours <= ADDED_P99_MS))
        vs = ratio(ours, peer)
        # nginx's added p99 can be ~0 or negative (noise): then only "not worse than nginx" is checkable.
        met = None if peer is None else (ours <= VS_NGINX * peer if peer > 0 else ours <= peer)
        bars.append(_bar(f"added p99 at {rate} rps <= {VS_NGINX:g}x nginx's [{ours:.3f} vs {peer:.3f} ms]", vs, met))
    for s in split:
        if s["proxy"] == "router":
            clean = s["success"] >= 0.999  # failed requests never reach an upstream: the counts would be short
            bars.append(_bar(f"split error over {s['requests']} requests <= 1% [{s['error_rel']:.3%}]"
                             + ("" if clean else f" ({1 - s['success']:.1%} of requests failed)"), s["error_rel"],
                             s["error_rel"] <= SPLIT_ERROR if clean else None))
    for d in degraded:
        if d["proxy"] == "router" and d["shadow"] != "healthy":
            x = d["p99_x_healthy"]
            bars.append(_bar(f"primary p99 with a {d['shadow']} shadow <= {DEGRADED:g}x healthy [{x:.3f}x]", x,
                             None if x is None else x <= DEGRADED))
    print("\nbars (informational; docs/benchmarks.md):")
    for b in bars:
        print(bar_line(b["bar"], b["met"]))
    if aa is not None:
        print(f"  noise floor (A/A: router, healthy vs healthy shadow in the same rounds): p99 {aa['p99']:.2f}x, "
              f"steady p99 {aa['steady_p99']:.2f}x")
    return bars


def _spread(row: dict) -> str:
    return "/".join(f"{run['p99_ms']:.3g}" for run in row["runs"])


def _added(latency: list[dict], rate: int, path: str) -> float | None:
    return next((r["added_p99_ms"] for r in latency if r["rate"] == rate and r["path"] == path), None)
