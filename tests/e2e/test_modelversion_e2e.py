"""The README's first flow: with the chart installed, the example ModelVersion trains in a real Job,
its artifact is committed to MinIO with a manifest, and it is registered Ready with metrics and lineage."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import joblib
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from tests.conftest import REPO_ROOT, kubectl
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e


def test_given_example_modelversion_when_applied_then_trained_by_a_job_and_registered_ready(user_namespace, s3_client):
    example = yaml.safe_load((REPO_ROOT / "manifests/examples/modelversion.yaml").read_text())
    name = example["metadata"]["name"] = f"bc-{uuid.uuid4().hex[:6]}"
    kubectl("-n", user_namespace, "apply", "-f", "-", input=json.dumps(example))
    mv = wait_for_phase(user_namespace, "modelversion", name, {"Ready", "Rejected", "Failed"}, timeout=420)
    status = mv["status"]
    assert status["phase"] == "Ready", status
    assert status["metrics"]["accuracy"] >= 0.9
    assert set(status["metrics"]) >= {"accuracy", "f1_macro", "roc_auc"}
    assert status["lineage"]["job"]
    jobs = json.loads(kubectl("-n", user_namespace, "get", "jobs", "-o", "json").stdout)["items"]
    assert [j["metadata"]["name"] for j in jobs] == [status["lineage"]["job"]], "exactly one training Job"
    assert jobs[0]["status"].get("succeeded") == 1

    # The committed artifact: manifest present, every sha256 matches, and the model predicts.
    uri = status["artifact"]["uri"]
    bucket, prefix = uri[len("s3://"):].split("/", 1)
    s3 = s3_client
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix.rstrip("/") + "/manifest.json")["Body"].read())
    assert manifest["owner"]["namespace"] == user_namespace and manifest["owner"]["name"] == name
    files = prefix.rstrip("/") + f"/{manifest['attempt']}/"  # the committing writer's own directory
    for filename, entry in manifest["files"].items():
        data = s3.get_object(Bucket=bucket, Key=files + filename)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], filename
    model_bytes = s3.get_object(Bucket=bucket, Key=files + "model.joblib")["Body"].read()
    assert hashlib.sha256(model_bytes).hexdigest() == status["artifact"]["sha256"]
    model = joblib.load(io.BytesIO(model_bytes))
    X, y = load_breast_cancer(return_X_y=True)
    assert (model.predict(X[:50]) == y[:50]).mean() > 0.85
    assert kubectl("-n", user_namespace, "get", "mv", name).stdout.count("Ready") == 1
