"""``mlops-train`` end to end as the Job runs it: a subprocess configured by env, against the real MinIO."""

from __future__ import annotations

import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import joblib
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes

from mlops_operator.providers.storage import ArtifactStore, encode_manifest, sha256_hex
from test_storage_minio import empty_prefix

pytestmark = pytest.mark.integration

TRAIN = pathlib.Path(sys.executable).parent / "mlops-train"  # the console script, as in the image
RF = {
    "dataset": {"builtin": "breast_cancer"},
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "hyperparameters": {"n_estimators": 30, "random_state": 0},
    "split": {"testFraction": 0.2, "seed": 42, "stratify": True},
    "metrics": ["accuracy", "f1_macro", "roc_auc"],
}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    termination: dict | None


@pytest.fixture()
def version_prefix(s3_env, store) -> Iterator[str]:  # noqa: F811
    """A fresh version prefix per test (the operator's layout adds the namespace: models/<ns>/<model>/<mv>/)."""
    prefix = f"s3://{s3_env['S3_BUCKET']}/models/it-train/v-{uuid.uuid4().hex[:12]}/"
    yield prefix
    empty_prefix(store, prefix)


@pytest.fixture()
def data_prefix(s3_env, store) -> Iterator[str]:  # noqa: F811
    prefix = f"s3://{s3_env['S3_BUCKET']}/tests/datasets/{uuid.uuid4().hex}/"
    yield prefix
    empty_prefix(store, prefix)


def run_train(s3_env: dict[str, str], prefix: str, training: dict, tmp_path: pathlib.Path, **overrides: str) -> Run:
    log = tmp_path / f"termination-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "MLOPS_"))}
    env.update(s3_env)
    env.update({
        "MLOPS_MODEL": "it-train",
        "MLOPS_MODEL_VERSION": prefix.rstrip("/").rsplit("/", 1)[1],
        "MLOPS_TRAINING": json.dumps(training),
        "MLOPS_ARTIFACT_PREFIX": prefix,
        "MLOPS_TERMINATION_LOG": str(log),
    })
    env.update(overrides)
    proc = subprocess.run([str(TRAIN)], env=env, capture_output=True, text=True, timeout=300)
    termination = json.loads(log.read_text()) if log.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, termination)


def _error_line(run: Run) -> str:
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("ERROR:")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def _objects(store: ArtifactStore, prefix: str) -> set[str]:  # noqa: F811
    loc = store.location(prefix)
    listed = store._client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key).get("Contents", [])
    return {o["Key"][len(loc.key):] for o in listed}


def _put_frame(store: ArtifactStore, uri: str, df: pd.DataFrame) -> None:  # noqa: F811
    if uri.endswith(".parquet"):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        store.put_object(uri, buf.getvalue())
    else:
        store.put_object(uri, df.to_csv(index=False).encode())


def test_given_builtin_dataset_when_trained_then_committed_version_loads_and_predicts(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    owner = {"namespace": "team-a", "kind": "ModelVersion", "name": "bc-v1", "uid": "u-1"}
    run = run_train(s3_env, version_prefix, RF, tmp_path, MLOPS_OWNER=json.dumps(owner), MLOPS_SPEC_HASH="5" * 64)
    assert run.code == 0, run.stderr
    assert "loading dataset breast_cancer..." in run.stdout
    assert "fitting RandomForestClassifier on 455 rows" in run.stdout
    assert "uploaded" in run.stdout

    manifest = store.verify_prefix(version_prefix)  # every file re-hashed against the manifest
    assert set(manifest["files"]) == {"model.joblib", "MLmodel", "metrics.json", "reference.json", "model.onnx"}
    assert manifest["owner"] == owner and manifest["specHash"] == "5" * 64  # who committed it, from what
    summary = run.termination
    assert summary["result"] == "Succeeded"
    assert summary["artifact"]["uri"] == version_prefix
    assert summary["artifact"]["sha256"] == sha256_hex(encode_manifest(manifest))
    assert summary["artifact"]["modelSha256"] == manifest["files"]["model.joblib"]["sha256"]

    model = joblib.load(io.BytesIO(store.fetch_verified(version_prefix, "model.joblib")))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    assert (model.predict(X) == y).mean() > 0.9

    metrics = json.loads(store.fetch_verified(version_prefix, "metrics.json"))
    assert metrics["metrics"] == summary["metrics"]
    assert set(metrics["metrics"]) == {"accuracy", "f1_macro", "roc_auc"} and metrics["metrics"]["roc_auc"] > 0.95
    assert metrics["parameters"]["n_estimators"] == 30
    assert metrics["data"]["trainRows"] == 455 and metrics["data"]["testRows"] == 114
    assert [c["name"] for c in metrics["signature"]["inputs"]] == list(X.columns)
    reference = json.loads(store.fetch_verified(version_prefix, "reference.json"))
    assert len(reference["features"]) == 30 and reference["rows"] == 455
    assert set(reference["prediction"]["frequencies"]) == {"0", "1"}
    mlmodel = yaml.safe_load(store.fetch_verified(version_prefix, "MLmodel"))
    assert mlmodel["flavors"]["sklearn"]["pickled_model"] == "model.joblib"


def test_given_committed_version_when_job_retried_then_exit_4_and_nothing_changes(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    assert run_train(s3_env, version_prefix, RF, tmp_path).code == 0
    before = store.read_manifest(version_prefix)
    again = run_train(s3_env, version_prefix, {**RF, "hyperparameters": {"n_estimators": 5}}, tmp_path)
    assert again.code == 4
    assert "already" in _error_line(again)
    assert again.termination["reason"] == "AlreadyExists"
    assert store.read_manifest(version_prefix) == before


def test_given_unknown_hyperparameter_when_trained_then_exit_2_naming_it_and_nothing_written(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    run = run_train(s3_env, version_prefix, {**RF, "hyperparameters": {"n_estimatorz": 10}}, tmp_path)
    assert run.code == 2
    assert "'n_estimatorz'" in _error_line(run)
    assert run.termination == {"result": "Failed", "reason": "InvalidInput", "exitCode": 2,
                               "message": _error_line(run).removeprefix("ERROR: ")}
    assert _objects(store, version_prefix) == set()


def test_given_estimator_outside_allowlist_when_trained_then_exit_2(s3_env, version_prefix, tmp_path):
    run = run_train(s3_env, version_prefix, {**RF, "estimator": "os.system", "hyperparameters": {}}, tmp_path)
    assert run.code == 2
    assert "not allowed" in _error_line(run)


def test_given_parquet_on_s3_when_regressor_trained_then_exit_0_with_regression_metrics(
        s3_env, store, version_prefix, data_prefix, tmp_path):  # noqa: F811
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    _put_frame(store, data_prefix + "diabetes.parquet", frame)
    training = {"dataset": {"uri": data_prefix + "diabetes.parquet", "target": "progression"},
                "estimator": "sklearn.linear_model.Ridge", "hyperparameters": {"alpha": 0.1},
                "metrics": ["r2", "rmse", "mae"]}
    run = run_train(s3_env, version_prefix, training, tmp_path)
    assert run.code == 0, run.stderr
    assert set(run.termination["metrics"]) == {"r2", "rmse", "mae"} and run.termination["metrics"]["r2"] > 0.3
    assert run.termination["datasetSha256"] == sha256_hex(store.read_object(data_prefix + "diabetes.parquet"))
    reference = json.loads(store.fetch_verified(version_prefix, "reference.json"))
    assert reference["prediction"]["kind"] == "numeric"


def test_given_csv_without_target_column_when_trained_then_exit_2_naming_the_column(
        s3_env, store, version_prefix, data_prefix, tmp_path):  # noqa: F811
    _put_frame(store, data_prefix + "d.csv", pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}))
    training = {**RF, "dataset": {"uri": data_prefix + "d.csv", "target": "label"}}
    run = run_train(s3_env, version_prefix, training, tmp_path)
    assert run.code == 2
    assert "target column 'label' not found" in _error_line(run)


def test_given_nan_in_data_when_trained_then_exit_2_naming_the_columns(
        s3_env, store, version_prefix, data_prefix, tmp_path):  # noqa: F811
    df = pd.DataFrame({"ok": range(20), "holes": [1.0, None] * 10, "label": [0, 1] * 10})
    _put_frame(store, data_prefix + "d.csv", df)
    run = run_train(s3_env, version_prefix, {**RF, "dataset": {"uri": data_prefix + "d.csv", "target": "label"}}, tmp_path)
    assert run.code == 2
    line = _error_line(run)
    assert "'holes'" in line and "'ok'" not in line


def test_given_s3_down_when_trained_then_exit_3_naming_the_endpoint(s3_env, version_prefix, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    run = run_train(s3_env, version_prefix, RF, tmp_path, S3_ENDPOINT_URL=endpoint)
    assert run.code == 3
    assert endpoint in _error_line(run)
    assert run.termination["reason"] == "StorageUnavailable"


def test_given_wrong_credentials_when_trained_then_exit_3_access_denied_without_the_secret(
        s3_env, version_prefix, tmp_path):
    run = run_train(s3_env, version_prefix, RF, tmp_path, AWS_SECRET_ACCESS_KEY="wrong-secret-value")
    assert run.code == 3
    assert run.termination["reason"] == "AccessDenied"
    assert "wrong-secret-value" not in run.stdout + run.stderr + json.dumps(run.termination)


def test_given_a_random_forest_when_trained_then_model_onnx_is_committed_and_answers_as_the_model_on_its_test_rows(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    from sklearn.model_selection import train_test_split

    from mlops_operator.runtime.serve_compiled import CompiledPredictor

    run = run_train(s3_env, version_prefix, RF, tmp_path)
    assert run.code == 0, run.stderr
    manifest = store.verify_prefix(version_prefix)
    compiled = json.loads(store.fetch_verified(version_prefix, "metrics.json", manifest))["compiled"]
    assert compiled["available"] is True and compiled["format"] == "onnx" and compiled["rows"] == 114, compiled
    assert 0 <= compiled["maxDifference"] <= compiled["tolerance"]
    model = joblib.load(io.BytesIO(store.fetch_verified(version_prefix, "model.joblib", manifest)))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)[1]
    served = CompiledPredictor(store.fetch_verified(version_prefix, "model.onnx", manifest), model.classes_)
    assert served.predict(X_test.to_numpy()).tolist() == model.predict(X_test).tolist()


def test_given_an_estimator_skl2onnx_cannot_convert_when_trained_then_no_model_onnx_and_the_reason_recorded(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    training = {"dataset": {"builtin": "diabetes"}, "estimator": "sklearn.kernel_ridge.KernelRidge",
                "split": {"testFraction": 0.2, "seed": 1, "stratify": False}, "metrics": ["r2"]}
    run = run_train(s3_env, version_prefix, training, tmp_path)
    assert run.code == 0, run.stderr
    manifest = store.verify_prefix(version_prefix)
    assert "model.onnx" not in manifest["files"]
    compiled = json.loads(store.fetch_verified(version_prefix, "metrics.json", manifest))["compiled"]
    assert compiled["available"] is False and "KernelRidge" in compiled["reason"]
