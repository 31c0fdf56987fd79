"""`drift`: `mlops_operator.drift` (PSI + binned KS per feature against a stored reference profile) vs a
vectorised numpy/scipy floor (PSI + two-sample chi-square on 10 reference-quantile bins, `scipy.stats.ks_2samp`
per feature) vs Evidently 0.7 (`DataDriftPreset`, PSI and KS) when it can be installed.

Synthetic normal data, current shifted by 0.5 sd on half the features. Reference profiles / edges are built
once outside the timed region (the server holds them precomputed); profile building is timed separately.
Everything in-process runs pinned to core 0; median of `repeats` after one warm-up; peak memory via tracemalloc
in a separate, untimed call (memory beyond the input arrays, which every contender holds). Ours reads the
current rows in blocks (`drift.stream`), so its peak is also shown for 100k and 1M rows of the same 50
features. Evidently at 1M cells (10k x 100) runs once after its warm-up; at 1M x 50 it runs the PSI preset
once with no warm-up and no memory probe, boxed to `EVIDENTLY_LARGE_TIMEOUT` (a timeout is reported as a
lower bound).
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import stats as sps

from tests.bench.common import (SERVER_CORE, TimedOut, Unavailable, median_time, peer_venv, pinned, print_bars, ratio,
                                run_worker, table, write_results)

SIZES = [(10_000, 10), (100_000, 10), (10_000, 100), (1_000_000, 50)]
BINS = 10
EVIDENTLY_TIMEOUT = 180.0
LARGE_CELLS = 10_000_000  # from here Evidently runs once, PSI only, within EVIDENTLY_LARGE_TIMEOUT
EVIDENTLY_LARGE_TIMEOUT = 420.0
MEMORY_ROWS = (100_000, 1_000_000)  # ours' peak at both, same features: flat if memory does not grow with rows


def make_data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(rows, features))
    current = rng.normal(size=(rows, features))
    current[:, : features // 2] += 0.5
    return reference, current


class Floor:
    """The vectorised floor: edges and reference counts precomputed; one searchsorted pass per feature."""

    def __init__(self, reference: np.ndarray):
        self.reference = reference
        self.edges = [np.quantile(reference[:, j], np.linspace(0, 1, BINS + 1)) for j in range(reference.shape[1])]
        self.ref_counts = np.stack([self._counts(reference[:, j], j) for j in range(reference.shape[1])])

    def _counts(self, values: np.ndarray, j: int) -> np.ndarray:
        return np.bincount(np.searchsorted(self.edges[j][1:-1], values, side="right"), minlength=BINS)

    def __call__(self, current: np.ndarray) -> dict[str, np.ndarray]:
        cur = np.stack([self._counts(current[:, j], j) for j in range(current.shape[1])])
        r = np.maximum(self.ref_counts / self.ref_counts.sum(1, keepdims=True), 1e-4)
        c = np.maximum(cur / cur.sum(1, keepdims=True), 1e-4)
        psi = np.sum((c - r) * np.log(c / r), axis=1)
        table2 = np.stack([self.ref_counts, cur], axis=1).astype(float)  # features x 2 x bins
        expected = table2.sum(2, keepdims=True) * table2.sum(1, keepdims=True) / table2.sum((1, 2), keepdims=True)
        chi2 = np.sum((table2 - expected) ** 2 / np.where(expected > 0, expected, 1), axis=(1, 2))
        chi2_p = sps.chi2.sf(chi2, BINS - 1)
        ks = [sps.ks_2samp(self.reference[:, j], current[:, j]) for j in range(current.shape[1])]
        return {"psi": psi, "chi2": chi2, "chi2_p": chi2_p, "ks": np.array([k.statistic for k in ks])}


def peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def evidently(reference: np.ndarray, current: np.ndarray, python: Path, repeats: int, large: bool = False) -> dict:
    """Evidently's timings (and peak memory unless `large`) in its own venv; raises Unavailable or TimedOut."""
    worker = Path(__file__).with_name("evidently_worker.py")
    timeout = EVIDENTLY_LARGE_TIMEOUT if large else EVIDENTLY_TIMEOUT
    options = ["0", "psi", "--no-peak"] if large else ["1", "psi,ks"]
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        ref_file, cur_file = Path(tmp, "ref.npy"), Path(tmp, "cur.npy")
        np.save(ref_file, reference)
        np.save(cur_file, current)
        argv = pinned(SERVER_CORE, [str(python), str(worker), str(ref_file), str(cur_file), str(repeats), *options])
        return run_worker(argv, timeout, "Evidently")


def run(repeats: int = 3) -> dict:
    from mlops_operator.drift.reference import feature_drift, reference_stats

    started = time.monotonic()
    print(f"drift benchmark: pinned to core {SERVER_CORE}; median of {repeats} after a warm-up; "
          f"sizes {', '.join(f'{r // 1000}k x {f}' for r, f in SIZES)}.", flush=True)
    unavailable: dict[str, str] = {}
    ev_python = None
    try:
        ev_python = peer_venv("evidently-venv", ["evidently==0.7.*", "pandas<3"], timeout=EVIDENTLY_TIMEOUT)
    except Unavailable as exc:
        unavailable["evidently"] = str(exc)
        print(f"  Evidently unavailable: {exc}", flush=True)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    rows, memory = [], []
    try:
        for n, f in SIZES:
            reference, current = make_data(n, f)
            names = [f"f{j}" for j in range(f)]
            profile_s, _ = median_time(lambda: reference_stats(reference, names), repeats, 1)
            profile = reference_stats(reference, names)
            ours_s, _ = median_time(lambda: feature_drift(profile, current), repeats, 1)
            floor = Floor(reference)
            floor_s, _ = median_time(lambda: floor(current), repeats, 1)
            row = {"rows": n, "features": f, "ours_s": ours_s, "ours_profile_s": profile_s, "floor_s": floor_s,
                   "ours_peak_mib": peak_mib(lambda: feature_drift(profile, current)),
                   "floor_peak_mib": peak_mib(lambda: floor(current))}
            if ev_python is not None and "evidently" not in unavailable:
                row |= evidently_row(reference, current, ev_python, repeats, unavailable)
            if f == SIZES[-1][1] and n == max(MEMORY_ROWS):
                memory = [{"rows": m, "features": f, "ours_peak_mib": peak_mib(lambda: feature_drift(profile, current[:m]))}
                          for m in MEMORY_ROWS]
            rows.append(row)
            ev_psi = evidently_cell(row, row.get("evidently_psi_s"))
            print(f"  {n // 1000}k x {f}: ours {ours_s:.4f}s floor {floor_s:.4f}s "
                  f"evidently psi {'-' if ev_psi is None else ev_psi}", flush=True)
    finally:
        os.sched_setaffinity(0, previous)
    doc = {"config": {"repeats": repeats, "bins": BINS, "sizes": SIZES}, "rows": rows, "memory": memory,
           "unavailable": unavailable, "elapsed_s": time.monotonic() - started}
    doc["bars"] = report(rows, memory, unavailable)
    print(f"  results: {write_results('drift', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc


def evidently_row(reference: np.ndarray, current: np.ndarray, python: Path, repeats: int,
                  unavailable: dict[str, str]) -> dict:
    """Evidently's cells for one size; a time-out is kept as a lower bound (its seconds, `evidently_timed_out`)."""
    large = reference.size >= LARGE_CELLS
    try:
        ev = evidently(reference, current, python, repeats if reference.size < 1_000_000 else 1, large)
    except TimedOut as exc:
        if not large:
            unavailable["evidently"] = str(exc)
        print(f"  Evidently: {exc}", flush=True)
        return {"evidently_psi_s": exc.seconds, "evidently_timed_out": True}
    except Unavailable as exc:
        unavailable["evidently"] = str(exc)
        print(f"  Evidently unavailable: {exc}", flush=True)
        return {}
    return {"evidently_psi_s": ev["psi"]["median_s"], "evidently_ks_s": ev.get("ks", {}).get("median_s"),
            "evidently_peak_mib": ev["psi"].get("peak_mib")}


def evidently_cell(row: dict, value: float | None, digits: int | None = None) -> float | str | None:
    """An Evidently number as printed: ``>N`` when Evidently timed out (it is then only a lower bound)."""
    if value is None or not row.get("evidently_timed_out"):
        return value if value is None or digits is None else round(value, digits)
    return f">{value:.0f}"


def report(rows: list[dict], memory: list[dict], unavailable: dict[str, str]) -> list[dict]:
    headers = ["rows x feat", "ours s", "floor s", "ours/floor", "Evid. PSI s", "Evid. KS s", "Evid./ours",
               "profile build s", "peak MiB ours/floor/Evid."]
    lines = []
    for r in rows:
        fastest_ev = min((r[k] for k in ("evidently_psi_s", "evidently_ks_s") if r.get(k) is not None), default=None)
        r["ours_vs_floor"], r["evidently_vs_ours"] = ratio(r["ours_s"], r["floor_s"]), ratio(fastest_ev, r["ours_s"])
        peaks = "/".join(f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in ("ours_peak_mib", "floor_peak_mib", "evidently_peak_mib"))
        lines.append([f"{r['rows'] // 1000}k x {r['features']}", round(r["ours_s"], 4), round(r["floor_s"], 4), r["ours_vs_floor"],
                      evidently_cell(r, r.get("evidently_psi_s")), r.get("evidently_ks_s"),
                      evidently_cell(r, r["evidently_vs_ours"], digits=1),
                      round(r["ours_profile_s"], 4), peaks])
    print("\n" + table(headers, lines))
    if memory:
        print("\n" + table(["rows x feat", "ours peak MiB (beyond the input)"],
                           [[f"{m['rows'] // 1000}k x {m['features']}", round(m["ours_peak_mib"], 1)] for m in memory]))
    for kind, why in unavailable.items():
        print(f"  {kind}: unavailable ({why})")
    # A time-out's lower bound counts: if Evidently took at least X times as long, it met ">= X".
    ev = [r["evidently_vs_ours"] for r in rows if r["evidently_vs_ours"] is not None]
    fl = [r["ours_vs_floor"] for r in rows]
    bars = [
        {"bar": ">= 10x faster than Evidently (fastest preset, every size)", "ratio": min(ev) if ev else None,
         "met": (min(ev) >= 10) if ev else None},
        {"bar": "<= 1.5x the numpy/scipy floor (every size)", "ratio": max(fl), "met": max(fl) <= 1.5},
    ]
    print_bars(bars)
    return bars
