"""Train on a FeatureSet snapshot in the real MinIO, serve the result, and prove there is no skew.

The snapshot is written the way ``mlops-materialize`` commits one (``ArtifactStore.write_version`` with
data.parquet, transform.json from ``fit_transform_doc`` and stats.json), ``train()`` runs in-process, and
the model is loaded by the server's own code (``ArtifactSource`` -> ``SklearnModel.load`` -> ``ServeApp``).
Raw rows sent over V1 and V2, missing values included, must get exactly the predictions of the in-process
``FeatureTransformer(transform.json).transform(raw)`` -> ``estimator.predict``.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.features.quality import check_quality
from mlops_operator.features.snapshot import build_snapshot
from mlops_operator.features.stats import stats_doc
from mlops_operator.features.transform import FeatureTransformer, fit_transform_doc
from mlops_operator.providers.storage import ArtifactStore, IntegrityError, parse_s3_uri
from mlops_operator.runtime.materialize import DATA_FILE, STATS_FILE, TRANSFORM_FILE
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import ArtifactSource, SklearnModel
from mlops_operator.runtime.train import train
from mlops_operator.runtime.train_artifacts import to_json
from mlops_operator.runtime.train_config import TrainConfig, parse_training
from test_storage_minio import _keys
from test_train_minio import _error_line, run_train

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FS = "bc-features"
INPUTS = ["radius", "texture", "perimeter", "area", "grade", "smoker"]
FEATURES = [
    {"name": "radius", "transform": "standardize"},  # no imputation: a null here cannot be served
    {"name": "texture", "transform": "minmax", "impute": {"strategy": "median"}},
    {"name": "perimeter", "transform": "log1p"},
    {"name": "area", "transform": "bucketize", "boundaries": [500, 1000]},
    {"name": "grade", "dtype": "int", "transform": "onehot"},
    {"name": "smoker", "dtype": "bool", "impute": {"strategy": "most_frequent"}},
]
TRAINING = {
    "featureSet": {"name": FS, "version": "v1"},
    "estimator": "sklearn.linear_model.LogisticRegression",
    "hyperparameters": {"max_iter": 5000},
    "split": {"testFraction": 0.25, "seed": 7, "stratify": True},
    "metrics": ["accuracy", "roc_auc"],
}




def source_frame() -> pd.DataFrame:
    """Breast cancer with an id, an int and a bool column, and missing texture/smoker values."""
    bc = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(3)
    n = len(bc)
    frame = pd.DataFrame({
        "id": np.arange(1000, 1000 + n), "radius": bc["mean radius"], "texture": bc["mean texture"],
        "perimeter": bc["mean perimeter"], "area": bc["mean area"], "grade": rng.integers(1, 4, n),
        "smoker": pd.array(rng.random(n) < 0.3, dtype="boolean"), "diagnosis": bc["target"],
    })
    frame.loc[::9, "texture"] = np.nan
    frame.loc[::13, "smoker"] = pd.NA
    return frame


def write_snapshot(store: ArtifactStore, prefix: str, *, target: str | None = "diagnosis") -> dict[str, bytes]:
    """Commit a snapshot as the materializer does: data.parquet, transform.json, stats.json, manifest last."""
    spec = FeatureSetSpec.model_validate({"source": {"builtin": "breast_cancer"}, "entityKey": "id",
                                          "features": FEATURES, **({"target": target} if target else {})})
    source = source_frame() if target else source_frame().drop(columns=["diagnosis"])
    snap = build_snapshot(spec, source, "the test source")
    report = check_quality(snap.features, snap.frame, datetime.now(UTC)).report
    buf = io.BytesIO()
    snap.frame.to_parquet(buf, index=False, engine="pyarrow")
    files = {
        DATA_FILE: buf.getvalue(),
        TRANSFORM_FILE: to_json(fit_transform_doc(spec, snap.frame, feature_set=FS, version="v1", feature_set_uid="u1")),
        STATS_FILE: to_json(stats_doc(snap.features, snap.frame, report, source={"builtin": "breast_cancer"})),
    }
    store.write_version(prefix, files)
    return files


def config(root: str, model_version: str = "bc-fs-v1") -> TrainConfig:
    return TrainConfig(model="bc-fs", model_version=model_version, training=parse_training(json.dumps(TRAINING)),
                       artifact_prefix=parse_s3_uri(f"{root}models/bc-fs/{model_version}/"),
                       feature_set_uri=parse_s3_uri(f"{root}features/{FS}/v1/"))


def app_for(model: SklearnModel) -> ServeApp:
    return ServeApp(model, ServeMetrics(model.name, model.version, "candidate"))


def numbers(raw: pd.DataFrame) -> list[list[float | None]]:
    """Raw rows as a client sends them: numbers (bool as 0/1), null for a missing value."""
    values = raw.astype("float64").to_numpy()
    return [[None if np.isnan(v) else float(v) for v in row] for row in values]


async def test_given_snapshot_on_minio_when_trained_and_served_then_predictions_equal_the_in_process_transform(store, root):
    files = write_snapshot(store, f"{root}features/{FS}/v1/")
    cfg = config(root)
    summary = train(cfg, store)
    model_prefix = str(cfg.artifact_prefix)

    # Lineage: the snapshot's name/version and the sha256 of its data.parquet.
    data_sha = hashlib.sha256(files[DATA_FILE]).hexdigest()
    assert summary["datasetSha256"] == data_sha
    assert summary["featureSet"] == {"name": FS, "version": "v1", "uri": f"{root}features/{FS}/v1/"}
    metrics = json.loads(store.fetch_verified(model_prefix, "metrics.json"))
    assert metrics["data"]["source"] == f"featureset:{FS}/v1" and metrics["data"]["sha256"] == data_sha
    assert metrics["data"]["featureSet"]["version"] == "v1" and metrics["data"]["rows"] == 569
    assert metrics["parameters"]["max_iter"] == 5000 and "steps" not in metrics["parameters"]
    assert metrics["metrics"]["accuracy"] > 0.85 and metrics["metrics"]["roc_auc"] > 0.9
    # The signature and the drift reference describe the RAW inputs the server receives.
    assert [(c["name"], c["dtype"]) for c in metrics["signature"]["inputs"]] == list(zip(
        INPUTS, ["float", "float", "float", "float", "int", "bool"]))
    mlmodel = yaml.safe_load(store.fetch_verified(model_prefix, "MLmodel"))
    assert [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])] == INPUTS
    reference = json.loads(store.fetch_verified(model_prefix, "reference.json"))
    assert list(reference["features"]) == INPUTS and reference["features"]["texture"]["missingFraction"] > 0.1

    # Serve it with the server's own loader, pinned to the registry's sha256.
    served = SklearnModel("bc-fs", "bc-fs-v1", source=ArtifactSource(store, model_prefix, summary["artifact"]["sha256"]))
    assert served.load()
    pipeline = served.runtime.estimator
    doc = json.loads(store.fetch_verified(f"{root}features/{FS}/v1/", TRANSFORM_FILE))
    assert pipeline.named_steps["features"].doc == doc

    data = pd.read_parquet(io.BytesIO(files[DATA_FILE]))
    raw = data[INPUTS].iloc[::5].reset_index(drop=True)  # 114 rows, texture/smoker missing in some
    assert raw["texture"].isna().any() and raw["smoker"].isna().any()
    expected = pipeline.named_steps["model"].predict(FeatureTransformer(doc).transform(raw)).tolist()
    assert set(expected) == {0, 1}  # both classes: equal lists cannot come from a constant answer
    rows = numbers(raw)
    tensors = [{"name": c, "shape": [len(rows)], "datatype": "FP32" if c == "grade" else "FP64",
                "data": [r[j] for r in rows]} for j, c in enumerate(INPUTS)]

    app = app_for(served)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as http:
        v1 = await http.post("/v1/models/bc-fs:predict", json={"instances": rows})
        records = await http.post("/v1/models/bc-fs:predict", json={
            "instances": [{c: v for c, v in zip(INPUTS, r) if v is not None} for r in rows]})
        v2 = await http.post("/v2/models/bc-fs/infer", json={"inputs": [
            {"name": "input-0", "shape": [len(rows), len(INPUTS)], "datatype": "FP64",
             "data": [v for r in rows for v in r]}]})
        by_feature = await http.post("/v2/models/bc-fs/infer", json={"inputs": tensors})
        metadata = await http.get("/v2/models/bc-fs")
        no_radius = await http.post("/v1/models/bc-fs:predict", json={"instances": [[None, *rows[0][1:]]]})
    assert v1.status_code == 200 and v1.json()["predictions"] == expected
    assert records.status_code == 200 and records.json()["predictions"] == expected
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == expected
    assert by_feature.status_code == 200 and by_feature.json()["outputs"][0]["data"] == expected
    assert metadata.json()["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(INPUTS)]}]
    # radius has no imputation and LogisticRegression takes no NaN: the client's mistake, a 400.
    assert no_radius.status_code == 400 and "cannot impute" in no_radius.json()["error"]


def test_given_snapshot_altered_after_commit_when_trained_then_integrity_error_and_no_model(store, root):
    snapshot = f"{root}features/{FS}/v1/"
    files = write_snapshot(store, snapshot)
    tampered = pd.read_parquet(io.BytesIO(files[DATA_FILE]))
    tampered.loc[0, "radius"] = 99.0
    store.put_object(store.object_uri(snapshot, DATA_FILE), tampered.to_parquet(index=False))
    cfg = config(root)
    with pytest.raises(IntegrityError, match="data.parquet: (size|sha256)"):
        train(cfg, store)
    assert _keys(store, str(cfg.artifact_prefix)) == set()


def test_given_featureset_without_target_when_mlops_train_runs_then_exit_2_naming_it(s3_env, store, root, tmp_path):
    write_snapshot(store, f"{root}features/{FS}/v1/", target=None)
    model_prefix = f"{root}models/bc-fs/bc-fs-v2/"
    run = run_train(s3_env, model_prefix, TRAINING, tmp_path, MLOPS_FEATURESET_URI=f"{root}features/{FS}/v1/")
    assert run.code == 2, run.stderr
    assert _error_line(run) == (f"ERROR: FeatureSet {FS} has no target column; set spec.target"
                                " (or train with training.featureSet.labels)")
    assert run.termination["reason"] == "InvalidInput"
    assert _keys(store, model_prefix) == set()
    unset = run_train(s3_env, model_prefix, TRAINING, tmp_path)
    assert unset.code == 2 and "MLOPS_FEATURESET_URI is not" in _error_line(unset)
