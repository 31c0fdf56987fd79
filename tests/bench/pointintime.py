"""`pointintime`: the point-in-time join of training labels with a feature history
(`mlops_operator.features.pointintime.as_of_join`) vs Feast's local offline store
(`FeatureStore.get_historical_features` on a `FileSource`, Feast from PyPI in a cached virtualenv), on the same
parquet files, with the same rule (latest value at or before each label's time, at most 30 days old).

Synthetic data: `entities` customers, 10 feature rows each at random times over a year, 5 float features;
`labels` label rows at random times. Each side runs in its own process pinned to core 0 (reading the files is
not timed), median of the repeats; the peak RSS of that process is reported. Both sides must join the same
rows with the same values (row count and a checksum of the joined values), or the ratio is not reported.
Feast is time-boxed: past FEAST_TIMEOUT it is reported as unavailable with that reason.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.bench.common import (REPO, SERVER_CORE, Unavailable, bar_line, peer_venv, pinned, ratio, run_worker, table,
                                write_results)

SIZES = [(100_000, 10_000), (1_000_000, 100_000)]  # (label rows, entities)
ROWS_PER_ENTITY, FEATURES = 10, 5
FEAST = ["feast==0.67.0"]
FEAST_INSTALL_TIMEOUT, FEAST_TIMEOUT = 900.0, 600.0
WORKER = Path(__file__).with_name("pointintime_worker.py")


def make_data(folder: Path, labels: int, entities: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC").value
    year = 365 * 86400 * 10**9
    n = entities * ROWS_PER_ENTITY
    features = pd.DataFrame({
        "customer_id": np.repeat(np.arange(entities, dtype="int64"), ROWS_PER_ENTITY),
        "event_time": pd.to_datetime(start + rng.integers(0, year, n) // 10**6 * 10**6, utc=True),
        **{f"f{i}": rng.normal(size=n) for i in range(FEATURES)},
    }).drop_duplicates(["customer_id", "event_time"])
    features.to_parquet(folder / "features.parquet", index=False)
    pd.DataFrame({
        "customer_id": rng.integers(0, entities, labels).astype("int64"),
        "event_timestamp": pd.to_datetime(start + rng.integers(0, year, labels) // 10**6 * 10**6, utc=True),
        "label": rng.integers(0, 2, labels),
    }).to_parquet(folder / "labels.parquet", index=False)


def side(python: str, which: str, folder: Path, repeats: int, timeout: float) -> dict:
    argv = pinned(SERVER_CORE, [python, str(WORKER), which, str(folder), str(repeats)])
    env = {"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"}
    result = run_worker(argv, timeout, which, env)
    result["median"] = float(np.median(result["seconds"]))
    return result


def run(repeats: int = 3) -> dict:
    started = time.monotonic()
    print(f"point-in-time join: pinned to core {SERVER_CORE}; median of {repeats}; files read untimed")
    try:
        feast_python: str | None = str(peer_venv("feast-venv", FEAST, FEAST_INSTALL_TIMEOUT))
        unavailable = ""
    except Unavailable as exc:
        feast_python, unavailable = None, str(exc)
    rows = []
    for labels, entities in SIZES:
        with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
            folder = Path(tmp)
            make_data(folder, labels, entities)
            ours = side(sys.executable, "ours", folder, repeats, FEAST_TIMEOUT)
            peer, reason = None, unavailable
            if feast_python:
                try:
                    peer = side(feast_python, "feast", folder, 1 if labels >= 1_000_000 else repeats, FEAST_TIMEOUT)
                except Unavailable as exc:
                    reason = str(exc)
            same = peer is not None and peer["rows"] == ours["rows"] and \
                abs(peer["checksum"] - ours["checksum"]) <= 1e-6 * max(1.0, abs(ours["checksum"]))
            if peer is not None and not same:
                reason = f"results differ: ours {ours['rows']} rows / {ours['checksum']:.6g}, " \
                         f"feast {peer['rows']} rows / {peer['checksum']:.6g}"
            rows.append({"labels": labels, "featureRows": entities * ROWS_PER_ENTITY, "joined": ours["rows"],
                         "ours_s": ours["median"], "ours_rss_mib": ours["peakRssMiB"],
                         "feast_s": peer["median"] if peer else None,
                         "feast_rss_mib": peer["peakRssMiB"] if peer else None,
                         "speedup": ratio(peer["median"], ours["median"]) if peer and same else None,
                         "same_result": same, "feast_unavailable": None if same else reason})
    print("\n" + table(["labels", "feature rows", "joined", "ours s", "ours RSS MiB", "Feast s", "Feast RSS MiB",
                        "Feast/ours"],
                       [[r["labels"], r["featureRows"], r["joined"], round(r["ours_s"], 3), round(r["ours_rss_mib"]),
                         r["feast_s"] and round(r["feast_s"], 2), r["feast_rss_mib"] and round(r["feast_rss_mib"]),
                         r["speedup"] and round(r["speedup"], 1)] for r in rows]))
    for r in rows:
        if r["feast_unavailable"]:
            print(f"  Feast at {r['labels']} labels: {r['feast_unavailable']}")
    big = rows[-1]
    print(bar_line(f"1M labels joined faster than Feast [{big['speedup'] and round(big['speedup'], 1)}x]",
                   None if big["speedup"] is None else big["speedup"] > 1.0))
    doc = {"rows": rows, "repeats": repeats, "elapsed_s": time.monotonic() - started}
    print(f"  results: {write_results('pointintime', doc)}  ({doc['elapsed_s']:.0f}s)")
    return doc
