"""The closed loop on the real cluster: drifted traffic -> the model server's drift gauge -> a Prometheus alert
rule -> Alertmanager -> the operator's /alerts webhook -> RetrainPolicy -> a new ModelVersion trained by a
Job -> the ModelDeployment that tracks the policy's channel rolls it out. Nobody edits a spec.

Time is compressed the way the local cluster's Prometheus is (5 s scrape and evaluation): the test installs
a copy of the shipped MLOpsFeatureDriftHigh rule with ``for: 0s`` and a label unique to this run, so only
this test's policy matches the alert. Like the shipped rule it keeps the pods' ``namespace`` label, which the
webhook requires: the alert acts only on the policies of that namespace.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import uuid

import httpx
import numpy as np
import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e


def _rule(run: str, namespace: str, version: str) -> str:
    return f"""groups:
- name: e2e-drift-{run}
  rules:
  - alert: MLOpsFeatureDriftHigh
    expr: max by (namespace, model, version, feature) (mlops_feature_drift{{test="psi", namespace="{namespace}", version="{version}"}}) > 0.25
    for: 0s
    labels: {{severity: warning, e2e_run: "{run}"}}
    annotations: {{summary: "feature drift (e2e copy of the shipped rule, for: 0s)"}}
"""


def _reload_prometheus(url: str) -> None:
    assert httpx.post(f"{url}/-/reload", timeout=10).status_code == 200


def _policy(run: str, channel: dict) -> dict:
    # Named for the run: its versions (<policy>-r<N>) land at models/<model>/<modelversion>/, where versions
    # are immutable, so a rerun must not reuse the names.
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": f"bc-retrain-{run}"},
            "spec": {"model": kit.MODEL, "cooldown": "10m", "maxConcurrent": 1,
                     "triggers": {"alerts": [{"matchLabels": {"alertname": "MLOpsFeatureDriftHigh", "e2e_run": run}}]},
                     "template": {"labels": channel, "training": {
                         "dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.ensemble.RandomForestClassifier",
                         "hyperparameters": {"n_estimators": 40, "random_state": 2}, "metrics": ["accuracy"]},
                         "gates": {"minMetrics": {"accuracy": 0.85}}}}}


def _rp_status(ns: str, run: str) -> dict:
    return (kit.get(ns, "rp", f"bc-retrain-{run}") or {}).get("status") or {}


def test_given_drifted_traffic_then_the_alert_retrains_and_the_new_version_is_rolled_out(user_namespace, cluster_env):
    ns = user_namespace
    run = uuid.uuid4().hex[:6]
    (v1,) = kit.unique_names("v1")
    channel = {"channel": f"loop-{run}"}
    kit.train(ns, {v1: kit.FAST}, labels={v1: channel})
    md = kit.deployment(v1, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE))
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = kit.deploy_first(ns, md, first=v1)
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_policy(run, channel)))

    rules = pathlib.Path(cluster_env["PROMETHEUS_RULES_DIR"]) / f"e2e-drift-{run}.yaml"
    rules.write_text(_rule(run, ns, v1))
    _reload_prometheus(cluster_env["PROMETHEUS_URL"])
    try:
        # Traffic from another population: every feature scaled up, well outside the training profile.
        drifted = (np.array(kit.ROWS) * 3.0).tolist()
        deadline = time.monotonic() + 240
        created: list[str] = []
        while time.monotonic() < deadline and not created:
            for _ in range(10):
                r = httpx.post(f"{base}/v2/models/{kit.MODEL}/infer", timeout=10, json={"inputs": [
                    {"name": "input-0", "shape": [len(drifted), len(drifted[0])], "datatype": "FP64", "data": drifted}]})
                assert r.status_code == 200, r.text
            created = [m for m in [(_rp_status(ns, run).get("lastTriggered") or {}).get("modelVersion")] if m]
            time.sleep(2)
        st = _rp_status(ns, run)
        assert created, f"no retrain within 240 s; RetrainPolicy status: {st}"
        new = created[0]
        record = st["lastTriggered"]
        assert record["source"] == "alert" and "MLOpsFeatureDriftHigh" in record["detail"], record
        mv = kit.get(ns, "mv", new)
        assert mv["metadata"]["labels"].get("channel") == channel["channel"], mv["metadata"]
        assert mv["metadata"]["labels"].get("mlops.dev/retrainpolicy") == f"bc-retrain-{run}", mv["metadata"]

        # The tracked channel got a newer Ready version: the deployment rolls it out by itself.
        final = kit.watch(ns, lambda s: s.get("stableVersion") == new and s.get("phase") == "Succeeded", 420)
        assert final["desiredVersion"] == new, final
        assert kit.stage(ns, new) == "Production" and kit.stage(ns, v1) != "Production"
        # An alert storm is one retrain: the alert keeps firing, the cooldown holds further ones.
        time.sleep(15)
        st = _rp_status(ns, run)
        assert st["retrains"] == 1, st
        made = json.loads(kubectl("-n", ns, "get", "mv", "-l", f"mlops.dev/retrainpolicy=bc-retrain-{run}",
                                  "-o", "json").stdout)["items"]
        assert [m["metadata"]["name"] for m in made] == [new], made
    finally:
        rules.unlink(missing_ok=True)
        _reload_prometheus(cluster_env["PROMETHEUS_URL"])
        if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
            kubectl("-n", ns, "delete", "rp", f"bc-retrain-{run}", "--wait=false", check=False)
