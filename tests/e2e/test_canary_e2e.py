"""Canary v1 → v2 on the real cluster: the operator serves v1 behind the Service named after the
ModelDeployment, then moves real load (through the router) to v2 in the configured steps, records each
analysis (Prometheus scraping the pods) in status and promotes. V1 and V2 answers equal in-process predict()."""

from __future__ import annotations

import io
import json
import time

import httpx
import joblib
import numpy as np
import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e


def _deployment(version: str) -> dict:
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 20, "pause": "10s"}, {"weight": 50, "pause": "10s"}]}}
    return kit.deployment(version, canary, kit.analysis(kit.ERROR_RATE, failure_limit=2))


def test_given_v1_serving_when_v2_desired_then_canary_steps_with_analysis_and_promotes(user_namespace, s3_client):
    ns = user_namespace
    V1, V2 = kit.unique_names("v1", "v2")
    kit.train(ns, {V1: kit.FAST, V2: 60})
    base = kit.deploy_first(ns, _deployment(V1))
    rows = kit.ROWS
    # V1 and V2 protocols answer what the registered artifact predicts in-process.
    v1 = httpx.post(f"{base}/v1/models/breast-cancer:predict", json={"instances": rows}, timeout=10)
    assert v1.status_code == 200, v1.text
    v2 = httpx.post(f"{base}/v2/models/breast-cancer/infer", timeout=10, json={
        "inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]})
    assert v2.status_code == 200, v2.text
    mv1 = json.loads(kubectl("-n", ns, "get", "mv", V1, "-o", "json").stdout)
    bucket, prefix = mv1["status"]["artifact"]["uri"][len("s3://"):].split("/", 1)
    s3 = s3_client
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    key = f"{prefix}{manifest['attempt']}/model.joblib"  # the committed file, in its writer's attempt directory
    model = joblib.load(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    expected = model.predict(np.array(rows)).tolist()
    assert v1.json()["predictions"] == expected
    assert v2.json()["outputs"][0]["data"] == expected

    with kit.Load(base) as load:
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
    assert len(load.samples) > 100 and not load.failures(), load.failures()[:5]
    assert {V1, V2} <= load.versions(), load.versions()
    stages = {n: json.loads(kubectl("-n", ns, "get", "mv", n, "-o", "json").stdout)["status"].get("stage")
              for n in (V1, V2)}
    assert stages[V2] == "Production", stages
