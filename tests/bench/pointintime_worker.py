"""One point-in-time join in its own process, for `tests/bench/pointintime.py`: `python pointintime_worker.py
ours|feast DATA_DIR REPEATS`. Prints one JSON line: seconds per repeat, joined rows, a checksum of the joined
values and the process' peak RSS. Run by path: the Feast side runs in its own virtualenv, without this project.

Both sides read the same parquet files (features: customer_id, event_time, f0..fN; labels: customer_id,
event_timestamp, label) and apply the same rule: the latest feature row at or before each label's time, no
older than MAX_AGE. Reading the files is outside the timed region on both sides."""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

MAX_AGE = timedelta(days=30)


def ours(data: Path, repeats: int) -> dict:
    from mlops_operator.features.pointintime import as_of_join

    features = pd.read_parquet(data / "features.parquet")
    labels = pd.read_parquet(data / "labels.parquet")
    columns = [c for c in features.columns if c.startswith("f")]
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out, _report = as_of_join(features, "customer_id", "event_time", columns, labels, "customer_id",
                                  "event_timestamp", "label", MAX_AGE)
        times.append(time.perf_counter() - start)
    return {"seconds": times, "rows": int(len(out)), "checksum": float(out[columns].sum().sum())}


def feast(data: Path, repeats: int) -> dict:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    features = pd.read_parquet(data / "features.parquet")
    columns = [c for c in features.columns if c.startswith("f")]
    del features
    repo = data / "feast-repo"
    repo.mkdir(exist_ok=True)
    config = RepoConfig(project="bench", registry=str(repo / "registry.db"), provider="local",
                        online_store={"type": "sqlite", "path": str(repo / "online.db")},
                        offline_store={"type": "file"}, entity_key_serialization_version=3, repo_path=str(repo))
    store = FeatureStore(config=config)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    view = FeatureView(name="history", entities=[customer], ttl=MAX_AGE,
                       schema=[Field(name=c, dtype=Float64) for c in columns],
                       source=FileSource(path=str(data / "features.parquet"), timestamp_field="event_time"))
    store.apply([customer, view])
    labels = pd.read_parquet(data / "labels.parquet")
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = store.get_historical_features(entity_df=labels, features=[f"history:{c}" for c in columns]).to_df()
        times.append(time.perf_counter() - start)
    joined = out.dropna(subset=columns)  # Feast keeps every label row; those without a value are null
    return {"seconds": times, "rows": int(len(joined)), "checksum": float(joined[columns].sum().sum())}


if __name__ == "__main__":
    side, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    result = (ours if side == "ours" else feast)(folder, count)
    result["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
