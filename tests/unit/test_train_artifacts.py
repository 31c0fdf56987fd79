"""The version's files: a model both joblib and MLflow's sklearn flavor can load, MLmodel, summary size."""

from __future__ import annotations

import io
import json
import pickle
from datetime import UTC, datetime

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.tree import DecisionTreeClassifier

from mlops_operator.providers.storage import build_manifest
from mlops_operator.runtime import train_artifacts as art

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _fitted() -> tuple[DecisionTreeClassifier, pd.DataFrame]:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "n": [1, 2, 3, 4]})
    return DecisionTreeClassifier(random_state=0).fit(X, [0, 0, 1, 1]), X


def test_given_model_when_serialized_then_joblib_and_plain_pickle_load_the_same_predictions():
    model, X = _fitted()
    raw = art.serialize_model(model)
    for loaded in (joblib.load(io.BytesIO(raw)), pickle.loads(raw)):  # pickle.load is what MLflow calls
        assert (loaded.predict(X) == model.predict(X)).all()


def test_given_signature_when_built_then_inputs_keep_column_order_and_vocabulary_dtypes():
    model, X = _fitted()
    sig = art.build_signature(X, model.predict(X))
    assert sig == {"inputs": [{"name": "a", "dtype": "float"}, {"name": "n", "dtype": "int"}],
                   "outputs": [{"name": "prediction", "dtype": "int"}]}


def test_given_signature_when_mlmodel_built_then_sklearn_and_pyfunc_flavors_point_at_the_pickle():
    model, X = _fitted()
    doc = yaml.safe_load(art.build_mlmodel(art.build_signature(X, model.predict(X)), "u" * 32, NOW, "1.9.1", "3.11.9"))
    assert doc["flavors"]["python_function"] == {
        "loader_module": "mlflow.sklearn", "model_path": "model.joblib", "predict_fn": "predict", "python_version": "3.11.9"}
    assert doc["flavors"]["sklearn"] == {
        "code": None, "pickled_model": "model.joblib", "serialization_format": "pickle", "sklearn_version": "1.9.1"}
    assert json.loads(doc["signature"]["inputs"]) == [{"type": "double", "name": "a"}, {"type": "long", "name": "n"}]
    assert json.loads(doc["signature"]["outputs"]) == [{"type": "long"}]
    assert doc["utc_time_created"] == "2026-03-01 12:00:00.000000"


def test_given_same_model_and_version_then_uuid_is_stable_and_differs_across_versions():
    assert art.model_uuid("bc", "v1") == art.model_uuid("bc", "v1") != art.model_uuid("bc", "v2")


def _metrics_doc(n_features: int = 3) -> dict:
    return {
        "metrics": {"accuracy": 0.95},
        "data": {"sha256": "d" * 64},
        "startedAt": "2026-03-01T12:00:00Z",
        "finishedAt": "2026-03-01T12:01:00Z",
        "parameters": {"n_estimators": 10},
        "signature": {"inputs": [{"name": f"feature number {i}", "dtype": "float"} for i in range(n_features)],
                      "outputs": [{"name": "prediction", "dtype": "int"}]},
        "warnings": [],
    }


def test_given_manifest_when_summary_built_then_artifact_pins_the_manifest_and_model():
    manifest = build_manifest({"model.joblib": b"m" * 10, "metrics.json": b"{}"}, NOW)
    summary = art.build_summary("s3://mlops/models/bc/v1/", "f" * 64, manifest, _metrics_doc())
    assert summary["artifact"] == {
        "uri": "s3://mlops/models/bc/v1/", "sha256": "f" * 64, "sizeBytes": 12, "format": "mlflow-sklearn",
        "modelFile": "model.joblib", "modelSha256": manifest["files"]["model.joblib"]["sha256"]}
    assert summary["result"] == "Succeeded" and summary["metrics"] == {"accuracy": 0.95}
    assert json.loads(art.compact(summary)) == summary  # small: nothing dropped


def test_given_wide_model_when_compacted_then_fits_termination_log_and_says_what_was_dropped():
    manifest = build_manifest({"model.joblib": b"m"}, NOW)
    summary = art.build_summary("s3://mlops/models/digits/v1/", "f" * 64, manifest, _metrics_doc(n_features=200))
    raw = art.compact(summary)
    assert len(raw) <= art.TERMINATION_LOG_LIMIT
    doc = json.loads(raw)
    assert doc["truncated"] == ["signature"] and doc["metrics"] == {"accuracy": 0.95} and "artifact" in doc


def test_given_failure_when_summarized_then_reason_message_and_exit_code():
    doc = art.failure_summary("InvalidInput", "x" * 5000, 2)
    assert doc["reason"] == "InvalidInput" and doc["exitCode"] == 2 and len(doc["message"]) == 3000
    assert len(art.compact(doc)) <= art.TERMINATION_LOG_LIMIT


def test_given_reference_with_numpy_values_when_serialized_then_strict_json():
    assert json.loads(art.to_json({"a": [1.5, 2]})) == {"a": [1.5, 2]}
    with pytest.raises(ValueError):
        art.to_json({"a": float(np.nan)})
