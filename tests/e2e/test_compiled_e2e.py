"""Compiled inference on the real cluster: a RandomForest version is compiled to ONNX at training, its status
says so with the tolerance it was proven within, its pods answer what scikit-learn answers on the version's
own test rows, and a canary moves between a compiled version and one served with ``compiledModel: off``,
both ways, under load. An estimator skl2onnx cannot convert is served by scikit-learn, with the reason in
``kubectl describe``."""

from __future__ import annotations

import io
import json

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split

from mlops_operator.builders.serving import version_name
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e

SPLIT = {"testFraction": 0.2, "seed": 42, "stratify": True}


def held_out_rows(loader, stratify: bool) -> np.ndarray:
    """The version's own held-out rows: the trainer's split of the builtin dataset, recomputed."""
    X, y = loader(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=SPLIT["testFraction"], random_state=SPLIT["seed"],
                            stratify=y if stratify else None)[1].to_numpy()


def committed(s3, ns: str, mv: str) -> tuple[dict, dict, object]:
    """(ModelVersion status, the version's manifest, its scikit-learn model) as committed in MinIO."""
    status = json.loads(kubectl("-n", ns, "get", "mv", mv, "-o", "json").stdout)["status"]
    bucket, prefix = status["artifact"]["uri"][len("s3://"):].split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    key = f"{prefix}{manifest['attempt']}/model.joblib"
    return status, manifest, joblib.load(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def answers(base: str, model: str, rows: np.ndarray) -> tuple[list, list]:
    """V1 and V2 answers of ``base`` for ``rows``."""
    v1 = httpx.post(f"{base}/v1/models/{model}:predict", json={"instances": rows.tolist()}, timeout=30)
    assert v1.status_code == 200, v1.text
    v2 = httpx.post(f"{base}/v2/models/{model}/infer", timeout=30, json={"inputs": [
        {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    return v1.json()["predictions"], v2.json()["outputs"][0]["data"]


def platform(ns: str, deployment: str, version: str, model: str) -> str:
    """What a version's own pods run (V2 model metadata on its version Service): onnxruntime or sklearn."""
    base = kit.service_url(ns, version_name(deployment, version))
    kit.wait_ready(base)
    return httpx.get(f"{base}/v2/models/{model}", timeout=10).json()["platform"]


def canary_to(ns: str, spec: dict, version: str) -> dict:
    """Patch the ModelDeployment under steady load; wait until ``version`` is promoted. No request may fail."""
    with kit.Load(kit.service_url(ns, "bc")) as load:
        kit.patch_spec(ns, spec)
        st = kit.watch(ns, lambda s: s.get("stableVersion") == version and s.get("phase") == "Succeeded"
                       and not s.get("candidateVersion"), 420)
    assert len(load.samples) > 50 and not load.failures(), load.failures()[:5]
    assert version in load.versions(), load.versions()
    return st


def test_given_a_compiled_random_forest_when_served_then_sklearn_answers_and_a_canary_to_compiled_off_works_both_ways(
        user_namespace, s3_client):
    ns = user_namespace
    V1, V2 = kit.unique_names("onnx", "plain")
    kit.train(ns, {V1: 100, V2: 60})
    rows = held_out_rows(load_breast_cancer, stratify=True)

    # Status: compiled, with the tolerance it was proven within; model.onnx pinned in the manifest.
    status1, manifest1, model1 = committed(s3_client, ns, V1)
    compiled = status1["compiled"]
    assert compiled["available"] is True and compiled["format"] == "onnx", compiled
    assert 0 <= compiled["maxDifference"] <= compiled["tolerance"] and compiled["rows"] == len(rows), compiled
    assert len(manifest1["files"]["model.onnx"]["sha256"]) == 64
    condition = next(c for c in status1["conditions"] if c["type"] == "Compiled")
    assert condition["status"] == "True", condition
    status2, _, model2 = committed(s3_client, ns, V2)
    assert status2["compiled"]["available"] is True

    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "10s"}]}}
    base = kit.deploy_first(ns, kit.deployment(V1, canary, kit.analysis(kit.ERROR_RATE, failure_limit=2), compiled="auto"))
    assert platform(ns, "bc", V1, kit.MODEL) == "onnxruntime"
    expected1 = model1.predict(rows).tolist()
    assert answers(base, kit.MODEL, rows) == (expected1, expected1)

    # Compiled -> served by scikit-learn (compiledModel: off), then back, each a canary under load.
    canary_to(ns, {"version": V2, "serving": {"compiledModel": "off"}}, V2)
    assert platform(ns, "bc", V2, kit.MODEL) == "sklearn"
    expected2 = model2.predict(rows).tolist()
    assert answers(base, kit.MODEL, rows) == (expected2, expected2)

    canary_to(ns, {"version": V1, "serving": {"compiledModel": "auto"}}, V1)
    assert platform(ns, "bc", V1, kit.MODEL) == "onnxruntime"
    assert answers(base, kit.MODEL, rows) == (expected1, expected1)


def test_given_an_estimator_skl2onnx_cannot_convert_when_served_then_sklearn_serves_with_the_reason_in_describe(
        user_namespace, s3_client):
    ns = user_namespace
    (name,) = kit.unique_names("kr")
    mv = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
          "spec": {"model": "diabetes", "training": {
              "dataset": {"builtin": "diabetes"}, "estimator": "sklearn.kernel_ridge.KernelRidge",
              "hyperparameters": {"alpha": 0.5}, "split": {**SPLIT, "stratify": False}, "metrics": ["r2"]}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(mv))
    assert wait_for_phase(ns, "mv", name, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    status, manifest, model = committed(s3_client, ns, name)
    assert status["compiled"]["available"] is False and "KernelRidge" in status["compiled"]["reason"]
    assert "model.onnx" not in manifest["files"]
    described = kubectl("-n", ns, "describe", "mv", name).stdout
    assert "NotCompiled" in described and "skl2onnx has no converter for KernelRidge" in described, described

    md = kit.deployment(name, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE), name="db", compiled="auto")
    md["spec"]["model"] = "diabetes"
    base = kit.deploy_first(ns, md)
    assert platform(ns, "db", name, "diabetes") == "sklearn"
    rows = held_out_rows(load_diabetes, stratify=False)
    expected = model.predict(rows)
    v1, v2 = answers(base, "diabetes", rows)
    assert np.allclose(v1, expected, rtol=1e-9, atol=0) and np.allclose(v2, expected, rtol=1e-9, atol=0)
    assert "NotCompiled" in kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}").stdout
