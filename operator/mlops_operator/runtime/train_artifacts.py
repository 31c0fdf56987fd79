"""The files of one model version (layout in docs/architecture.md) and the compact summary the operator reads.

``model.joblib`` is a plain pickle (protocol 5) of the fitted estimator: ``joblib.load`` reads it (joblib
loads standard pickles) and so does MLflow's sklearn flavor with ``serialization_format: pickle``. A
``joblib.dump`` file would NOT be readable by MLflow, which calls ``pickle.load`` directly. Recent MLflow
refuses pickle formats unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``; our server verifies the
sha256 from the manifest before unpickling, which is what makes loading a pickle acceptable here.
"""

from __future__ import annotations

import json
import pickle
import platform
import uuid
from datetime import UTC, datetime
from typing import Any, Mapping

import yaml

from mlops_operator.drift.reference import dtype_name
from mlops_operator.timeutil import iso_utc  # noqa: F401  (re-exported: runtime.train uses art.iso_utc)

MODEL_FILE = "model.joblib"
MLMODEL_FILE = "MLmodel"
METRICS_FILE = "metrics.json"
REFERENCE_FILE = "reference.json"
ARTIFACT_FORMAT = "mlflow-sklearn"
TERMINATION_LOG_LIMIT = 4096  # bytes kubelet keeps of /dev/termination-log
# Signature dtypes (FeatureSet vocabulary) -> MLflow column types.
_MLFLOW_TYPES = {"float": "double", "int": "long", "bool": "boolean", "category": "string"}


def serialize_model(estimator: Any) -> bytes:
    return pickle.dumps(estimator, protocol=5)


def build_signature(X: Any, predictions: Any, dtypes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{inputs: [{name, dtype}], outputs: [{name, dtype}]}`` as in ModelVersion.status.signature.

    ``dtypes`` (a FeatureSet's declared dtypes) wins over what the column's numpy dtype suggests: a
    nullable int or bool column read back from parquet is an object array, yet still an int or a bool."""
    import numpy as np

    declared = dtypes or {}
    inputs = [{"name": str(c), "dtype": declared.get(str(c)) or dtype_name(X[c].to_numpy())} for c in X.columns]
    return {"inputs": inputs, "outputs": [{"name": "prediction", "dtype": dtype_name(np.asarray(predictions))}]}


def feature_dtypes(transform: Mapping[str, Any]) -> dict[str, str]:
    """Raw input column -> FeatureSet dtype, from a snapshot's transform.json."""
    return {str(f["name"]): str(f["dtype"]) for f in transform["features"]}


def raw_reference(X: Any, transform: Mapping[str, Any], predictions: Any,
                  classification: bool) -> tuple[dict[str, Any], list[str]]:
    """``reference.json`` of a FeatureSet-trained model, and the input columns it leaves out.

    The server sees RAW rows (the pipeline transforms them), and records them as float64 (NaN = missing),
    so the reference profiles the raw inputs in that same representation: float/int features as numeric,
    bool features as categories of 0.0/1.0. Category features are not profiled: requests carry numbers
    only, so there is nothing comparable to their text values (listed under ``notProfiled``).
    """
    import pandas as pd

    from mlops_operator.drift.reference import reference_stats
    from mlops_operator.features.dtypes import convert

    dtypes = feature_dtypes(transform)
    columns = [str(c) for c in transform["inputColumns"]]
    profiled = [c for c in columns if dtypes[c] != "category"]
    skipped = [c for c in columns if dtypes[c] == "category"]
    frame = pd.DataFrame({c: convert(X[c], c, dtypes[c]) for c in profiled}, index=X.index)
    reference = reference_stats(frame, profiled, categorical=[c for c in profiled if dtypes[c] == "bool"],
                                predictions=predictions, predictions_categorical=classification)
    if skipped:
        reference["notProfiled"] = {c: "category feature: requests carry numbers only" for c in skipped}
    return reference, skipped


def _mlflow_schema(columns: list[Mapping[str, str]], named: bool) -> str:
    cols = [({"type": _MLFLOW_TYPES[c["dtype"]], "name": c["name"]} if named else {"type": _MLFLOW_TYPES[c["dtype"]]})
            for c in columns]
    return json.dumps(cols)


def build_mlmodel(signature: Mapping[str, Any], model_uuid: str, created: datetime,
                  sklearn_version: str, python_version: str | None = None) -> bytes:
    """An ``MLmodel`` file that ``mlflow.sklearn.load_model`` / ``mlflow.pyfunc.load_model`` accept."""
    doc = {
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.sklearn",
                "model_path": MODEL_FILE,
                "predict_fn": "predict",
                "python_version": python_version or platform.python_version(),
            },
            "sklearn": {
                "code": None,
                "pickled_model": MODEL_FILE,
                "serialization_format": "pickle",
                "sklearn_version": sklearn_version,
            },
        },
        "model_uuid": model_uuid,
        "signature": {
            "inputs": _mlflow_schema(signature["inputs"], named=True),
            "outputs": _mlflow_schema(signature["outputs"], named=False),
        },
        "utc_time_created": created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    return yaml.safe_dump(doc, sort_keys=True).encode()


def model_uuid(model: str, model_version: str) -> str:
    """Deterministic, so a retried Job produces the same MLmodel for the same version."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mlops.dev/models/{model}/{model_version}").hex


def to_json(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False).encode() + b"\n"


def build_summary(prefix: str, manifest_sha256: str, manifest: Mapping[str, Any],
                  metrics_doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator copies into ModelVersion.status (artifact, metrics, parameters, lineage bits)."""
    files = manifest["files"]
    return {
        "result": "Succeeded",
        "artifact": {
            "uri": prefix,
            "sha256": manifest_sha256,  # of manifest.json: pins every file of the version
            "sizeBytes": sum(f["size"] for f in files.values()),
            "format": ARTIFACT_FORMAT,
            "modelFile": MODEL_FILE,
            "modelSha256": files[MODEL_FILE]["sha256"],
        },
        "metrics": metrics_doc["metrics"],
        "datasetSha256": metrics_doc["data"]["sha256"],
        **({"featureSet": metrics_doc["data"]["featureSet"]} if metrics_doc["data"].get("featureSet") else {}),
        "startedAt": metrics_doc["startedAt"],
        "finishedAt": metrics_doc["finishedAt"],
        "parameters": metrics_doc["parameters"],
        "signature": metrics_doc["signature"],
        "warnings": metrics_doc["warnings"],
    }


def failure_summary(reason: str, message: str, exit_code: int) -> dict[str, Any]:
    return {"result": "Failed", "reason": reason, "message": message[:3000], "exitCode": exit_code}


def compact(summary: Mapping[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> bytes:
    """The summary as JSON within ``limit`` bytes: drop the bulky optional keys first (they are all in
    metrics.json too); ``truncated`` lists what was dropped so the operator knows to read metrics.json."""
    doc = dict(summary)
    dropped: list[str] = []
    for key in ("signature", "warnings", "parameters", "metrics"):
        raw = json.dumps(doc, separators=(",", ":")).encode()
        if len(raw) <= limit:
            return raw
        if key in doc:
            doc.pop(key)
            dropped.append(key)
            doc["truncated"] = dropped
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return raw if len(raw) <= limit else raw[:limit]
