"""Fault scenarios that disturb a shared part of the cluster for a moment, restored in ``finally``: the
operator's RBAC loses a verb, then gets it back (scenario 29); Prometheus answers NaN, +Inf and an empty
vector through real recording rules (13). Run under the cluster lock, like every cluster test."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import condition, kubectl
from tests.e2e import fault_kit as faults
from tests.e2e import prometheus_kit as prom
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.faults


def _forbidden(ns: str, version: str) -> dict | None:
    cond = condition(kit.get(ns, "mv", version), "Retrying")
    return cond if cond.get("status") == "True" and cond.get("reason") == "Forbidden" else None


@pytest.mark.scenario(29, "an RBAC verb removed, then restored")
def test_given_job_create_forbidden_when_a_version_is_applied_then_a_forbidden_condition_and_it_trains_once_restored(
        user_namespace, record_property):
    ns = user_namespace
    (version,) = kit.unique_names("rbac")
    faults.wait_for_replicas()
    role = json.loads(kubectl("get", "clusterrole", faults.OPERATOR, "-o", "json").stdout)
    rules = role["rules"]
    without = [r if "jobs" not in r.get("resources", []) else {**r, "verbs": [v for v in r["verbs"] if v != "create"]}
               for r in rules]
    assert without != rules, "the operator's ClusterRole has no create on jobs to take away"
    restarts = faults.restarts()
    restored = None
    try:
        kubectl("patch", "clusterrole", faults.OPERATOR, "--type=json", "-p",
                json.dumps([{"op": "replace", "path": "/rules", "value": without}]))
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(kit.modelversion(version, kit.FAST)))
        cond = faults.wait_until("Retrying=True reason Forbidden", lambda: _forbidden(ns, version), 120)
        assert "forbidden" in cond["message"].lower(), cond
        events = json.loads(kubectl("-n", ns, "get", "events", "--field-selector",
                                    f"involvedObject.name={version},reason=Forbidden", "-o", "json").stdout)["items"]
        assert events and events[0]["type"] == "Warning", events
        assert json.loads(kubectl("-n", ns, "get", "jobs", "-o", "json").stdout)["items"] == []
    finally:
        kubectl("patch", "clusterrole", faults.OPERATOR, "--type=json", "-p",
                json.dumps([{"op": "replace", "path": "/rules", "value": rules}]))
        restored = time.time()
    jobs = faults.wait_until("the training Job created once RBAC is back", lambda: json.loads(kubectl(
        "-n", ns, "get", "jobs", "-o", "json").stdout)["items"], 120, 1)
    recovered = time.time() - restored
    record_property("recovery_s", recovered)
    print(f"\nRBAC restored: the Job was created {recovered:.1f}s later")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    assert wait_for_phase(ns, "mv", version, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    assert condition(kit.get(ns, "mv", version), "Retrying").get("status") != "True"
    assert faults.restarts() == restarts, "the operator restarted: a Forbidden must be a condition, not a crash"


RULES = """groups:
- name: mlops-faults-{run}
  rules:
  - record: mlops_fault_nan_{run}
    expr: vector(0) / 0
  - record: mlops_fault_inf_{run}
    expr: vector(1) / 0
  - record: mlops_fault_empty_{run}
    expr: sum(mlops_fault_no_such_series_{run})
"""


@pytest.mark.scenario(13, "Prometheus returns NaN, +Inf, an empty vector: never promotes")
def test_given_recording_rules_answering_nan_inf_and_nothing_when_analysed_then_the_canary_never_promotes(
        user_namespace, cluster_env, record_property):
    ns, run = user_namespace, uuid.uuid4().hex[:8]
    prometheus = cluster_env["PROMETHEUS_URL"]
    v1, v2 = kit.unique_names("v1", "v2")
    # Bounds a naive comparison would pass: NaN > 0.05 is False, +Inf >= 0.5 is True.
    checks = [{"name": "nan", "query": f"mlops_fault_nan_{run}", "max": 0.05},
              {"name": "inf", "query": f"mlops_fault_inf_{run}", "min": 0.5},
              {"name": "empty", "query": f"mlops_fault_empty_{run}", "min": 0.5}]
    with prom.Rules(cluster_env["PROMETHEUS_RULES_DIR"], prometheus, f"e2e-faults-{run}", RULES.format(run=run)):
        faults.wait_until("the recording rules evaluated", lambda: prom.query(prometheus, f"mlops_fault_inf_{run}"), 60)
        for name, expect in (("nan", "NaN"), ("inf", "+Inf")):
            result = prom.query(prometheus, f"mlops_fault_{name}_{run}")
            assert result[0]["value"][1] == expect, result
        kit.train(ns, {v1: kit.FAST, v2: 60})
        canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "20s"}]}}
        base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(*checks, failure_limit=2)))
        weights: set[int] = set()
        with kit.Load(base) as load:
            started = time.time()
            kit.patch_spec(ns, {"version": v2})
            st = kit.watch(ns, lambda s: s.get("phase") == "RolledBack" or s.get("stableVersion") == v2, 300,
                           seen=lambda s: weights.add(s.get("canaryWeight") or 0))
            record_property("recovery_s", time.time() - started)
    assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
    assert max(weights) <= 30, sorted(weights)
    for name in ("nan", "inf", "empty"):
        runs = [a for a in st.get("analysis") or [] if a["metric"] == name]
        assert not any(a["passed"] for a in runs), (name, runs)
    assert [a for a in st["analysis"] if a["metric"] in ("nan", "inf")], st["analysis"]
    assert [h["event"] for h in st["history"] if h["version"] == v2] == ["rolledBack"], st["history"]
    assert not load.failures(), load.failures()[:5]
