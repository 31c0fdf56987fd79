"""The closed loop on the real cluster: drifted traffic -> the model server's drift gauge -> a Prometheus alert
rule -> Alertmanager -> the operator's /alerts webhook -> RetrainPolicy -> a new ModelVersion trained by a
Job -> the ModelDeployment that tracks the policy's channel rolls it out. Nobody edits a spec.

Time is compressed (tests/e2e/drift_kit.py): a copy of the shipped MLOpsFeatureDriftHigh rule with ``for: 0s``
and a label unique to this run, so only this test's policy matches the alert.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest

from tests.conftest import kubectl
from tests.e2e import drift_kit
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e


FEATURESET = "bc-loop-features"


def _training(trees: int, depth: int | None = None) -> dict:
    return drift_kit.training(FEATURESET, trees, depth)


def _policy(run: str, channel: dict, training: dict) -> dict:
    # Named for the run: its versions (<policy>-r<N>) are immutable, and a rerun must train, not adopt the
    # version an earlier run committed under the same name.
    return drift_kit.policy(f"bc-retrain-{run}", {"e2e_run": run}, channel, training, "bc")


def _rp_status(ns: str, run: str) -> dict:
    return (kit.get(ns, "rp", f"bc-retrain-{run}") or {}).get("status") or {}


def _loop(ns: str, cluster_env: dict, run: str, stable_training: dict,
          retrain_training: dict) -> tuple[str, str, dict, str]:
    """v1 (trained on the FeatureSet) serves through a Canary ModelDeployment tracking a channel; drifted traffic
    fires the drift alert, which retrains. Returns (v1, the retrained version's name, its body once it ended,
    the entry URL)."""
    (v1,) = kit.unique_names("v1")
    channel = {"channel": f"loop-{run}"}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(drift_kit.featureset(FEATURESET)))
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": v1, "labels": channel},
         "spec": {"model": kit.MODEL, "training": stable_training}}))
    assert wait_for_phase(ns, "mv", v1, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}},
                        kit.analysis(kit.ERROR_RATE))
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = kit.deploy_first(ns, md, first=v1)
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_policy(run, channel, retrain_training)))
    snapshots_before = len(kit.get(ns, "fs", FEATURESET)["status"]["versions"])

    with drift_kit.DriftRule(cluster_env["PROMETHEUS_RULES_DIR"], cluster_env["PROMETHEUS_URL"], f"e2e-drift-{run}",
                             ns, v1, {"e2e_run": run}):
        deadline = time.monotonic() + 240
        created: list[str] = []
        while time.monotonic() < deadline and not created:
            drift_kit.send_drifted(base)
            created = [m for m in [(_rp_status(ns, run).get("lastTriggered") or {}).get("modelVersion")] if m]
            time.sleep(2)
        st = _rp_status(ns, run)
        assert created, f"no retrain within 240 s; RetrainPolicy status: {st}"
        new = created[0]
        record = st["lastTriggered"]
        assert record["source"] == "alert" and "MLOpsFeatureDriftHigh" in record["detail"], record
        assert record.get("snapshotRequest"), record  # fresh data was asked for before training
        ended = wait_for_phase(ns, "mv", new, {"Ready", "Rejected", "Failed"}, 480)
        # Trained on a snapshot materialized for this retrain, not on the one v1 used.
        fs = kit.get(ns, "fs", FEATURESET)["status"]
        fresh = next(v for v in fs["versions"] if v.get("request") == record["snapshotRequest"])
        assert len(fs["versions"]) > snapshots_before and fresh["trigger"] == "Request", fs["versions"]
        assert ended["spec"]["training"]["featureSet"]["version"] == fresh["version"]
        assert ended["status"]["lineage"]["featureSetVersion"] == fresh["version"]
        assert _rp_status(ns, run)["lastTriggered"]["featureSetVersion"] == fresh["version"]
        mv = kit.get(ns, "mv", new)
        assert mv["metadata"]["labels"].get("channel") == channel["channel"], mv["metadata"]
        assert mv["metadata"]["labels"].get("mlops.dev/retrainpolicy") == f"bc-retrain-{run}", mv["metadata"]
        return v1, new, ended, base


def _fair_gate(mv: dict, v1: str) -> dict:
    """The mustBeatStable result: both scores measured on the challenger's own test rows."""
    gate = next(g for g in mv["status"]["gateResults"] if g["gate"] == "mustBeatStable")
    assert gate["baselineVersion"] == v1 and gate["comparison"] == "sameRows", gate
    assert gate["rows"] > 0 and gate["threshold"] is not None and gate["value"] is not None, gate
    return gate


def test_given_drifted_traffic_then_fresh_data_retrains_a_better_model_that_a_canary_promotes(
        user_namespace, cluster_env):
    ns, run = user_namespace, uuid.uuid4().hex[:6]
    try:
        v1, new, mv, base = _loop(ns, cluster_env, run, stable_training=_training(2, depth=1),
                                  retrain_training=_training(60))
        assert mv["status"]["phase"] == "Ready", mv["status"]
        gate = _fair_gate(mv, v1)
        assert gate["passed"] and gate["value"] >= gate["threshold"], gate
        # The tracked channel got a newer Ready version: a canary rolls it out and promotes it by itself.
        weights: set[int] = set()
        with kit.Load(base) as load:  # the canary's analysis judges real traffic (too little never promotes)
            final = kit.watch(ns, lambda s: s.get("stableVersion") == new and s.get("phase") == "Succeeded", 420,
                              seen=lambda s: weights.add(s.get("canaryWeight") or 0))
        assert not load.failures(), load.failures()[:5]
        assert {v1, new} <= load.versions(), load.versions()  # both answered during the canary
        assert 50 in weights, weights  # it went through the canary step, not a switch
        assert final["desiredVersion"] == new, final
        assert kit.stage(ns, new) == "Production" and kit.stage(ns, v1) != "Production"
        # An alert storm is one retrain: the alert keeps firing, the cooldown holds further ones.
        st = _rp_status(ns, run)
        assert st["retrains"] == 1, st
        made = json.loads(kubectl("-n", ns, "get", "mv", "-l", f"mlops.dev/retrainpolicy=bc-retrain-{run}",
                                  "-o", "json").stdout)["items"]
        assert [m["metadata"]["name"] for m in made] == [new], made
    finally:
        if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
            kubectl("-n", ns, "delete", "rp", f"bc-retrain-{run}", "--wait=false", check=False)


def test_given_the_retrained_model_is_worse_on_the_same_rows_then_rejected_and_the_stable_version_keeps_serving(
        user_namespace, cluster_env):
    ns, run = user_namespace, uuid.uuid4().hex[:6]
    try:
        v1, new, mv, _ = _loop(ns, cluster_env, run, stable_training=_training(60),
                               retrain_training=_training(1, depth=1))
        assert mv["status"]["phase"] == "Rejected", mv["status"]
        gate = _fair_gate(mv, v1)
        assert not gate["passed"] and gate["value"] < gate["threshold"], gate
        ready = next(c for c in mv["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "GatesFailed" and v1 in ready["message"], ready
        described = kubectl("-n", ns, "describe", "mv", new).stdout
        assert "GatesFailed" in described and v1 in described, described
        st = kit.status(ns)
        assert st["stableVersion"] == v1 and st.get("candidateVersion") in (None, "") and st["phase"] == "Succeeded", st
        r = httpx.post(f"{kit.service_url(ns, 'bc')}/v2/models/{kit.MODEL}/infer", timeout=10, json={"inputs": [
            {"name": "input-0", "shape": [1, len(kit.ROWS[0])], "datatype": "FP64", "data": kit.ROWS[0]}]})
        assert r.status_code == 200 and r.json()["model_version"] == v1, r.text
    finally:
        if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
            kubectl("-n", ns, "delete", "rp", f"bc-retrain-{run}", "--wait=false", check=False)
