"""``score(...)`` (the ``mlops-batch-predict`` Job) in-process against the real S3 servers: a model trained on a
FeatureSet snapshot scores that snapshot and a CSV of raw rows chunk by chunk, every part verified by the
manifest; predictions equal the loaded model's ``predict`` on the same rows; a committed run is never
written again; unreadable inputs are InvalidInput with a reason, never a crash."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from mlops_operator.providers.storage import ArtifactStore
from mlops_operator.runtime import batch_predict as bp
from mlops_operator.runtime.serve_model import ArtifactSource
from mlops_operator.runtime.train import train
from test_train_featureset_minio import FS, INPUTS, config, source_frame, write_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OWNER = {"namespace": "team-a", "kind": "BatchPrediction", "name": "nightly"}




@pytest.fixture()
def trained(store, root) -> dict:
    """A model trained on a committed FeatureSet snapshot (the pipeline carries the snapshot's fitted transform)."""
    write_snapshot(store, f"{root}features/{FS}/v1/")
    summary = train(config(root), store)
    return {"uri": f"{root}models/bc-fs/bc-fs-v1/", "sha256": summary["artifact"]["sha256"],
            "snapshot": f"{root}features/{FS}/v1/"}


def batch_config(root: str, model: dict, inp: dict, *, run: str = "r-1", namespace: str = "team-a",
                 chunk_rows: int = 100, passthrough: tuple[str, ...] = ("id",), spec_hash: str = "h" * 64) -> bp.BatchConfig:
    return bp.load_config({
        "MLOPS_BATCH_RUN": run, "MLOPS_BATCH_OUTPUT_PREFIX": f"{root}predictions/{namespace}/nightly/{run}/",
        "MLOPS_BATCH_MODEL_URI": model["uri"], "MLOPS_BATCH_MODEL_SHA256": model["sha256"],
        "MLOPS_BATCH_MODEL_VERSION": "bc-fs-v1", "MLOPS_BATCH_INPUT": json.dumps(inp),
        "MLOPS_BATCH_PASSTHROUGH": json.dumps(list(passthrough)), "MLOPS_BATCH_CHUNK_ROWS": str(chunk_rows),
        "MLOPS_OWNER": json.dumps({**OWNER, "namespace": namespace, "uid": "u-1"}), "MLOPS_SPEC_HASH": spec_hash,
    })


def read_output(store: ArtifactStore, prefix: str) -> tuple[pd.DataFrame, dict, dict]:
    """Every committed part (each verified against the manifest), concatenated in order; run.json; manifest."""
    manifest = store.read_manifest(prefix)
    run = json.loads(store.fetch_verified(prefix, bp.RUN_FILE, manifest))
    parts = [pd.read_parquet(io.BytesIO(store.fetch_verified(prefix, p["name"], manifest))) for p in run["parts"]]
    return pd.concat(parts, ignore_index=True), run, manifest


def expected(store: ArtifactStore, model: dict, raw: pd.DataFrame) -> np.ndarray:
    """What the model server's loader + ``predict`` give for the same raw rows, in-process."""
    loaded = ArtifactSource(store, model["uri"], model["sha256"]).fetch()
    return np.asarray(loaded.estimator.predict(raw[INPUTS]))


def test_given_a_snapshot_when_scored_in_chunks_then_parts_are_committed_and_equal_in_process_predict(store, root,
                                                                                                       trained):
    cfg = batch_config(root, trained, {"snapshotUri": trained["snapshot"], "featureSet": FS, "version": "v1"})
    summary = bp.score(cfg, store)
    out, run, manifest = read_output(store, str(cfg.prefix))
    assert summary["ok"] and summary["rows"] == 569 and summary["files"] == 6 and not summary["existing"]
    assert [p["rows"] for p in run["parts"]] == [100] * 5 + [69]
    assert set(manifest["files"]) == {p["name"] for p in run["parts"]} | {bp.RUN_FILE}
    assert manifest["owner"] == {**OWNER, "uid": "u-1"} and manifest["specHash"] == "h" * 64
    assert run["input"]["featureSet"] == FS and run["model"]["sha256"] == trained["sha256"]
    snapshot = pd.read_parquet(io.BytesIO(store.fetch_verified(trained["snapshot"], "data.parquet")))
    assert list(out.columns) == ["id", "prediction"]
    np.testing.assert_array_equal(out["id"].to_numpy(), snapshot["id"].to_numpy())
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, trained, snapshot))


def test_given_a_csv_of_raw_rows_when_scored_then_predictions_equal_in_process_predict(store, root, trained):
    raw = source_frame().drop(columns=["diagnosis"])
    uri = f"{root}data/rows.csv"
    store.put_object(uri, raw.to_csv(index=False).encode())
    cfg = batch_config(root, trained, {"uri": uri}, chunk_rows=250)
    assert bp.score(cfg, store)["files"] == 3
    out, run, _ = read_output(store, str(cfg.prefix))
    assert run["input"]["format"] == "csv" and len(run["input"]["sha256"]) == 64
    reread = pd.read_csv(io.BytesIO(store.read_object(uri)))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, trained, reread))


def test_given_a_committed_run_when_scored_again_then_reported_unchanged_and_another_spec_is_refused(store, root,
                                                                                                      trained):
    inp = {"snapshotUri": trained["snapshot"], "featureSet": FS, "version": "v1"}
    cfg = batch_config(root, trained, inp)
    bp.score(cfg, store)
    before = store.read_manifest(cfg.prefix)
    again = bp.score(cfg, store)
    assert again["existing"] and store.read_manifest(cfg.prefix) == before
    with pytest.raises(bp.RunTaken):
        bp.score(batch_config(root, trained, inp, spec_hash="o" * 64), store)
    assert store.read_manifest(cfg.prefix) == before
    assert bp.outcome(bp.RunTaken("x")) == (4, "RunTaken")


def test_given_equal_names_in_two_namespaces_when_scored_then_separate_prefixes_and_owners(store, root, trained):
    inp = {"snapshotUri": trained["snapshot"], "featureSet": FS, "version": "v1"}
    owners = []
    for ns in ("team-a", "team-b"):
        cfg = batch_config(root, trained, inp, namespace=ns)
        assert not bp.score(cfg, store)["existing"]  # the other namespace's run is not adopted
        owners.append(store.read_manifest(cfg.prefix)["owner"]["namespace"])
    assert owners == ["team-a", "team-b"]


@pytest.mark.parametrize("what", ["missing", "garbage"])
def test_given_an_unreadable_dataset_when_scored_then_dataset_unreadable_and_nothing_committed(store, root, trained,
                                                                                                what):
    uri = f"{root}data/rows.parquet"
    if what == "garbage":
        store.put_object(uri, b"this is not parquet")
    cfg = batch_config(root, trained, {"uri": uri})
    with pytest.raises(bp.DatasetUnreadable):
        bp.score(cfg, store)
    assert bp.outcome(bp.DatasetUnreadable("x")) == (2, "DatasetUnreadable")
    assert not store.has_manifest(cfg.prefix)


def test_given_rows_without_a_model_column_when_scored_then_missing_columns_names_it(store, root, trained):
    raw = source_frame().drop(columns=["diagnosis", "texture"])
    uri = f"{root}data/rows.parquet"
    store.put_object(uri, raw.to_parquet(index=False))
    with pytest.raises(bp.MissingColumns, match="'texture'"):
        bp.score(batch_config(root, trained, {"uri": uri}), store)
