"""Canary v1 → v2 on the real cluster: the operator serves v1 behind the Service named after the
ModelDeployment, then moves real load (through the router) to v2 in the configured steps, records each
analysis (Prometheus scraping the pods) in status and promotes. V1 and V2 answers equal in-process predict()."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import kubectl
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e


def _modelversion(name: str, n_estimators: int) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "breast-cancer", "training": {
                "dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.ensemble.RandomForestClassifier",
                "hyperparameters": {"n_estimators": n_estimators, "random_state": 1},
                "split": {"testFraction": 0.2, "seed": 42, "stratify": True}, "metrics": ["accuracy", "roc_auc"]},
                "gates": {"minMetrics": {"accuracy": 0.85}}}}


def _deployment(version: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
            "spec": {"model": "breast-cancer", "version": version,
                     "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 20, "pause": "10s"},
                                                                         {"weight": 50, "pause": "10s"}]}},
                     "analysis": {"interval": "10s", "failureLimit": 2, "minSamples": 10, "onNoData": "hold",
                                  "metrics": [{"name": "error-rate", "builtin": "errorRate", "max": 0.05}]},
                     "serving": {"replicas": 1}, "traffic": {"router": "builtin"}, "progressDeadline": "5m"}}


class _Load:
    """Steady V1 traffic to the entry Service from the host (kube-proxy routes ClusterIPs here too)."""

    def __init__(self, url: str, rows: list[list[float]]):
        self.url, self.rows, self.codes = url, rows, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    code = client.post(self.url, json={"instances": [self.rows[i % len(self.rows)]]}).status_code
                except httpx.HTTPError:
                    code = 0
                self.codes[code] = self.codes.get(code, 0) + 1
                i += 1
                time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def test_given_v1_serving_when_v2_desired_then_canary_steps_with_analysis_and_promotes(user_namespace, s3_client):
    ns = user_namespace
    # Artifacts live at models/<model>/<modelversion>/ in one bucket: names unique to this run.
    run = uuid.uuid4().hex[:5]
    V1, V2 = f"bc-{run}-v1", f"bc-{run}-v2"
    for mv in (_modelversion(V1, 30), _modelversion(V2, 60)):
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(mv))
    for name in (V1, V2):
        assert wait_for_phase(ns, "mv", name, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"

    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_deployment(V1)))
    md = wait_for_phase(ns, "mdep", "bc", {"Succeeded", "Failed", "Degraded"}, 300)
    assert md["status"]["phase"] == "Succeeded" and md["status"]["stableVersion"] == V1, md["status"]
    svc = json.loads(kubectl("-n", ns, "get", "svc", "bc", "-o", "json").stdout)
    assert svc["spec"]["ports"][0]["port"] == 8080
    base = f"http://{svc['spec']['clusterIP']}:8080"

    X, _ = load_breast_cancer(return_X_y=True)
    rows = X[:20].tolist()
    # The entry Service answers once the router pod is Ready (the router starts after the first version).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    # V1 and V2 protocols answer what the registered artifact predicts in-process.
    v1 = httpx.post(f"{base}/v1/models/breast-cancer:predict", json={"instances": rows}, timeout=10)
    assert v1.status_code == 200, v1.text
    v2 = httpx.post(f"{base}/v2/models/breast-cancer/infer", timeout=10, json={
        "inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]})
    assert v2.status_code == 200, v2.text
    mv1 = json.loads(kubectl("-n", ns, "get", "mv", V1, "-o", "json").stdout)
    bucket, prefix = mv1["status"]["artifact"]["uri"][len("s3://"):].split("/", 1)
    s3 = s3_client
    model = joblib.load(io.BytesIO(s3.get_object(Bucket=bucket, Key=prefix.rstrip("/") + "/model.joblib")["Body"].read()))
    expected = model.predict(np.array(rows)).tolist()
    assert v1.json()["predictions"] == expected
    assert v2.json()["outputs"][0]["data"] == expected

    with _Load(f"{base}/v1/models/breast-cancer:predict", rows) as load:
        kubectl("-n", ns, "patch", "mdep", "bc", "--type=merge", "-p", json.dumps({"spec": {"version": V2}}))
        weights, deadline, status = set(), time.monotonic() + 420, {}
        while time.monotonic() < deadline:
            status = json.loads(kubectl("-n", ns, "get", "mdep", "bc", "-o", "json").stdout).get("status", {})
            if status.get("candidateVersion") == V2 and status.get("canaryWeight") is not None:
                weights.add(status["canaryWeight"])
            if status.get("stableVersion") == V2 and status.get("phase") == "Succeeded":
                break
            time.sleep(1)
    assert status.get("stableVersion") == V2 and status.get("phase") == "Succeeded", status
    assert {20, 50} <= weights, f"canary weights seen: {sorted(weights)}"
    assert any(a.get("passed") for a in status.get("analysis", [])), status.get("analysis")
    assert any(h.get("version") == V2 and h.get("event") == "promoted" for h in status.get("history", []))
    assert load.codes.get(200, 0) > 100 and sum(v for k, v in load.codes.items() if k != 200) == 0, load.codes
    stages = {n: json.loads(kubectl("-n", ns, "get", "mv", n, "-o", "json").stdout)["status"].get("stage")
              for n in (V1, V2)}
    assert stages[V2] == "Production", stages
