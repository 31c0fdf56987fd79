"""Rollouts that must fail safe, on the real cluster with real load through the router and Prometheus
scraping the pods: a slow canary rolls back and stays rolled back until asked; a blue/green switch drops no
request; a slow shadow never slows the primary; an operator killed mid-canary resumes from status;
Prometheus down holds a canary at 0% and rolls it back mid-analysis; new versions mid-canary supersede it.
(The failure scenarios of a rollout; the flow they exercise: docs/architecture.md, "One rollout".)"""

from __future__ import annotations

import json
import time

import pytest

from mlops_operator.builders.serving import preview_name, version_name
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_reconciles

pytestmark = pytest.mark.e2e

# The fast version's p95 is ~2.5 ms, the slow one's 25-60 ms depending on how busy the machine is (measured
# 24.8 ms on an idle 2-core machine): 12 ms sits well between both.
SLOW_BOUND = 0.012
LATENCY_P95 = {"name": "latency-p95", "builtin": "latencyP95Seconds", "max": SLOW_BOUND}


def _gone(ns: str, version: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kit.get(ns, "deployment", version_name("bc", version)) is None:
            return True
        time.sleep(1)
    return False


def test_given_a_slow_canary_when_latency_fails_then_rolled_back_and_not_retried_until_asked(user_namespace):
    ns = user_namespace
    v1, v3 = kit.unique_names("v1", "slow")
    kit.train(ns, {v1: kit.FAST, v3: kit.SLOW})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "2m"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, LATENCY_P95)))

    weights: set[int] = set()
    with kit.Load(base, pause=0.05) as load:
        kit.patch_spec(ns, {"version": v3})
        st = kit.watch(ns, lambda s: s.get("phase") == "RolledBack" or s.get("stableVersion") == v3, 300,
                       seen=lambda s: weights.add(s.get("canaryWeight") or 0))
        assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
        rolled_back = time.time()
        assert 30 in weights, f"the slow version never got its canary share: {sorted(weights)}"
        failed = [a for a in st["analysis"] if a["metric"] == "latency-p95" and not a["passed"]]
        assert len(failed) >= 2 and all(a["value"] > SLOW_BOUND for a in failed if "value" in a), st["analysis"]
        assert any(h["version"] == v3 and h["event"] == "rolledBack" for h in st["history"]), st["history"]
        # All traffic back on stable, the candidate's pods gone, its stage says it was given up.
        assert "candidate" not in kit.router_document(ns), kit.router_document(ns)
        assert _gone(ns, v3), "the rolled-back version still has a Deployment"
        assert kit.stage(ns, v3) == "Archived" and kit.stage(ns, v1) == "Production"
        # Not retried on its own: three more passes of the operator over it later nothing has moved.
        wait_reconciles("ModelDeployment", "modeldeployments", passes=3)
        again = kit.status(ns)
        assert again["phase"] == "RolledBack" and not again.get("candidateVersion"), again
        assert kit.get(ns, "deployment", version_name("bc", v3)) is None
    assert not load.failures(), f"slow is not failed: every request must still succeed, got {load.failures()[:5]}"
    assert load.versions(since=rolled_back + 1) == {v1}

    kit.annotate(ns, "retry")
    st = kit.watch(ns, lambda s: s.get("candidateVersion") == v3, 60)
    assert st["phase"] in {"Progressing", "Paused"}, st
    retries = json.loads(kubectl("-n", ns, "get", "events", "--field-selector", "reason=Retry", "-o", "json").stdout)
    assert retries["items"], "no Retry event for the retry request"


def test_given_blue_green_when_switched_under_load_then_no_request_fails(user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromote": True, "previewReplicas": 1, "scaleDownDelay": "10s"}}
    base = kit.deploy_first(ns, kit.deployment(v1, strategy, kit.analysis(kit.ERROR_RATE)))

    with kit.Load(base) as load:
        kit.patch_spec(ns, {"version": v2})
        # Pre-promotion analysis measures the preview: it needs traffic of its own.
        kit.watch(ns, lambda s: s.get("candidateVersion") == v2, 60)
        preview = kit.service_url(ns, preview_name("bc"), timeout=120)
        with kit.Load(preview, pause=0.05) as preview_load:
            st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 and s.get("phase") == "Succeeded", 300)
        switched = time.time()
        assert _gone(ns, v1, timeout=90), "the old version was not scaled down after scaleDownDelay"
        load.wait_answers(since=max(time.time(), switched + 2))
    assert any(a["passed"] for a in st["analysis"]), st["analysis"]
    # (The preview Service goes away at the switch, so only its answers count here, not its failures.)
    assert preview_load.versions() == {v2}, "the preview Service must only reach the candidate"
    assert not load.failures(), f"{len(load.failures())} of {len(load.samples)} failed: {load.failures()[:5]}"
    assert len(load.samples) > 200 and {v1, v2} <= load.versions(), load.versions()
    assert load.versions(since=switched + 2) == {v2}
    assert kit.stage(ns, v2) == "Production" and kit.stage(ns, v1) == "Archived"


def test_given_a_slow_shadow_when_mirrored_then_primary_is_not_delayed_and_agreement_recorded(user_namespace):
    ns = user_namespace
    v1, v3 = kit.unique_names("v1", "slow")
    kit.train(ns, {v1: kit.FAST, v3: kit.SLOW})
    strategy = {"type": "Shadow", "shadow": {"mirrorPercent": 100, "duration": "30s", "minAgreement": 0.8,
                                             "autoPromote": False}}
    base = kit.deploy_first(ns, kit.deployment(v1, strategy, kit.analysis(kit.ERROR_RATE, LATENCY_P95)))

    with kit.Load(base, pause=0.1) as load:
        load.wait_answers(count=40)  # the primary's own latency, before any mirroring
        before = time.time()
        kit.patch_spec(ns, {"version": v3})
        kit.watch(ns, lambda s: s.get("candidateVersion") == v3 and s.get("currentStep") == 1, 120)
        mirroring = time.time()
        st = kit.watch(ns, lambda s: s.get("phase") in {"Paused", "RolledBack", "Succeeded"}, 240)
        decided = time.time()
    # The shadow is slow and its own latency check says so: failing beyond failureLimit aborts it (rolled
    # back, never promoted), while its agreement with stable is recorded; users never waited for it.
    agreement = [a for a in st["analysis"] if a["metric"] == "shadow-agreement"]
    assert agreement and all(0.8 <= a["value"] <= 1.0 for a in agreement if "value" in a), st["analysis"]
    slow = [a["value"] for a in st["analysis"] if a["metric"] == "latency-p95" and "value" in a]
    assert slow and min(slow) > SLOW_BOUND, st["analysis"]
    assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
    assert not load.failures(), load.failures()[:5]
    assert load.versions() == {v1}, "a shadow's answers must never reach the client"
    # The primary answered in its own time while every request was also mirrored to a version that needs
    # more than 12 ms: had the router waited for the shadow, the median would be above the shadow's p95.
    during = load.median_seconds(mirroring, decided)
    assert during < min(slow) / 2, f"primary median {during * 1000:.1f} ms while the shadow's p95 was {min(slow) * 1000:.0f} ms"
    assert load.median_seconds(before - 10, before) * 3 + 0.005 > during


def test_given_operator_killed_at_30_percent_then_resumes_from_status_with_fresh_analysis(user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "20s"}, {"weight": 60, "pause": "10s"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, failure_limit=2)))

    timeline: list[tuple[float, int, str | None]] = []
    with kit.Load(base) as load:
        kit.patch_spec(ns, {"version": v2})
        at30 = kit.watch(ns, lambda s: s.get("canaryWeight") == 30, 180)["stepStartedAt"]
        kubectl("-n", "mlops-system", "delete", "pod", "-l", "app.kubernetes.io/name=mlops-operator",
                "--grace-period=0", "--force", "--wait=false")
        killed = time.time()
        kubectl("-n", "mlops-system", "rollout", "status", "deployment/mlops-operator", "--timeout=120s", timeout=130)
        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 and s.get("phase") == "Succeeded", 300,
                       seen=lambda s: timeline.append((time.time(), s.get("canaryWeight") or 0, s.get("stepStartedAt"))))
    after_kill = [(w, started) for t, w, started in timeline if t > killed]
    assert after_kill and after_kill[0] == (30, at30), f"the restarted operator did not resume the 30% step: {timeline[:5]}"
    reached_60 = next((t for t, w, _ in timeline if w == 60), None)
    assert reached_60 is not None, timeline
    fresh = [a for a in st["analysis"] if a["passed"] and killed < kit.epoch(a["at"]) <= reached_60]
    assert fresh, f"moved to 60% without a passing analysis after the restart: {st['analysis']}"
    started = [h for h in st["history"] if h["version"] == v2]
    assert [h["event"] for h in started] == ["promoted"], st["history"]
    assert not load.failures(), load.failures()[:5]


def test_given_prometheus_down_then_the_canary_holds_at_zero_and_mid_analysis_rolls_back(user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "2m"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, failure_limit=1)))

    def metrics_unavailable(s: dict) -> bool:
        return any(c["type"] == "AnalysisAvailable" and c["reason"] == "MetricsUnavailable"
                   for c in s.get("conditions") or [])

    with kit.Load(base) as load:
        try:
            # Down before the rollout: the candidate comes up but gets no traffic until analysis is possible.
            kit.stop_component("prometheus")
            kit.patch_spec(ns, {"version": v2})
            kit.watch(ns, lambda s: s.get("candidateVersion") == v2 and metrics_unavailable(s), 180)
            wait_reconciles("ModelDeployment", "modeldeployments", passes=3)
            held = kit.status(ns)
            assert held["canaryWeight"] == 0 and "candidate" not in kit.router_document(ns), held
            kit.restart_cluster_components()
            kit.watch(ns, lambda s: s.get("canaryWeight") == 30 and any(a["passed"] for a in s.get("analysis") or []), 180)
            # Down mid-analysis: every run is an error, and errors beyond failureLimit roll back.
            kit.stop_component("prometheus")
            stopped = time.time()
            st = kit.watch(ns, lambda s: s.get("phase") == "RolledBack" or s.get("stableVersion") == v2, 180)
        finally:
            kit.restart_cluster_components()
        assert _gone(ns, v2), "the candidate still has a Deployment after the rollback"
        rolled_back = time.time()
        load.wait_answers(since=rolled_back)
    assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
    # Runs before the stop may have failed for their own reasons (a restarted Prometheus has too few samples
    # for a while); every run recorded after the stop is a failed one that names the connection error.
    errors = [a for a in st["analysis"] if not a["passed"]]
    after_stop = [a for a in st["analysis"] if kit.epoch(a["at"]) >= stopped + 1]
    assert len(errors) >= 2 and after_stop, st["analysis"]
    assert all(not a["passed"] and "error" in a["message"] for a in after_stop), st["analysis"]
    assert metrics_unavailable(st), st["conditions"]
    assert not load.failures(), load.failures()[:5]
    assert load.versions(since=rolled_back) == {v1}


def test_given_new_versions_mid_canary_then_superseded_and_a_flip_back_keeps_stable_serving(user_namespace):
    ns = user_namespace
    v1, v2, v3 = kit.unique_names("v1", "v2", "v3")
    kit.train(ns, {v1: kit.FAST, v2: 40, v3: 50})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "2m"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE)))

    with kit.Load(base) as load:
        kit.patch_spec(ns, {"version": v2})
        kit.watch(ns, lambda s: s.get("candidateVersion") == v2 and s.get("canaryWeight") == 30, 180)
        switched = time.time()
        kit.patch_spec(ns, {"version": v3})
        st = kit.watch(ns, lambda s: s.get("candidateVersion") == v3, 60)
        # v2 gave way without being marked failed, and v3 starts from the first step with no verdict yet.
        assert any(h["version"] == v2 and h["event"] == "aborted" and v3 in h["reason"] for h in st["history"])
        assert st.get("abortedVersion") is None and st["failedChecks"] == 0, st
        st = kit.watch(ns, lambda s: s.get("canaryWeight") == 30, 180)
        assert kit.epoch(st["stepStartedAt"]) >= switched - 1, st
        kit.patch_spec(ns, {"version": v1})  # flip back: stable never stopped serving
        st = kit.watch(ns, lambda s: not s.get("candidateVersion") and s.get("phase") == "Succeeded", 60)
        assert _gone(ns, v2) and _gone(ns, v3)
        settled = time.time()
        load.wait_answers(since=settled)
    assert st["stableVersion"] == v1, st
    assert not load.failures(), load.failures()[:5]
    assert load.versions(since=settled) == {v1} and {v2, v3} <= load.versions(), load.versions()
    assert kit.stage(ns, v1) == "Production"


def test_given_track_latest_ready_when_a_matching_version_is_registered_then_it_is_rolled_out(user_namespace):
    """How retraining reaches serving: nobody edits the ModelDeployment, a new Ready version is enough."""
    ns = user_namespace
    v1, v2, v3 = kit.unique_names("v1", "v2", "v3")
    stable, experimental = {"channel": "stable"}, {"channel": "experimental"}
    kit.train(ns, {v1: kit.FAST}, labels={v1: stable})
    md = kit.deployment(v1, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE))
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": stable}
    base = kit.deploy_first(ns, md, first=v1)

    with kit.Load(base) as load:
        kit.train(ns, {v2: 60}, labels={v2: stable})
        kit.train(ns, {v3: 40}, labels={v3: experimental})  # newest, but not on the followed channel
        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 and s.get("phase") == "Succeeded", 180)
        assert st["desiredVersion"] == v2, st
        # More passes: the unmatched newer version is still not picked up.
        wait_reconciles("ModelDeployment", "modeldeployments", passes=3)
        again = kit.status(ns)
        settled = time.time()
        load.wait_answers(since=settled)
    assert again["stableVersion"] == v2 and not again.get("candidateVersion") and again["desiredVersion"] == v2, again
    assert load.versions(since=settled) == {v2} and v1 in load.versions()
    assert kit.stage(ns, v2) == "Production" and kit.stage(ns, v3) in (None, "None")
