"""Failover of the leader-elected operator on the real cluster (issue #18, fault scenario 4: two replicas,
exactly one acts). The chart runs two replicas; only the holder of the Lease acts. The leader's process is
SIGKILLed on the node (``ctr tasks kill``: a crash, no clean shutdown, so no release — the Lease must
expire; deleting the pod instead would send SIGTERM first, and a leader that still manages to release in
its grace period hands over in ~2 s, which made the old version of this test measure one of two different
things) at 30 % of a canary while Alertmanager fires an alert at a RetrainPolicy. The standby takes the
Lease, continues the canary from status with fresh analysis (same step, same stepStartedAt, the router
keeps its weights until a run measured after the kill), the alert — refused while nobody leads, re-sent by
Alertmanager — retrains exactly once, and nothing is created twice. The Lease names exactly one new holder
(no second handover). The time from the kill to the new leader's Lease and to its first fresh analysis is
measured and printed.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e import fault_kit as faults
from tests.e2e.conftest import operator_metrics, wait_for_phase

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.scenario(4, "leader killed mid-canary: standby continues once")]

LEASE_DURATION, RETRY_PERIOD = 15, 2  # the chart's defaults
# Bounds: the Lease expires leaseDuration after the last renewal (at most a retry period before the kill),
# a standby checks every retryPeriod * 1.2; then Kopf lists the objects and the next analysis run is due
# within one interval (10 s), plus the local cluster's slack.
TAKEOVER_BOUND = LEASE_DURATION + RETRY_PERIOD * 1.2 + 5
FRESH_ANALYSIS_BOUND = TAKEOVER_BOUND + 10 + 20


def test_given_two_replicas_when_the_leader_is_killed_mid_canary_then_the_standby_continues_once(
        user_namespace, cluster_env, record_property):
    ns, run = user_namespace, uuid.uuid4().hex[:6]
    faults.wait_for_replicas()
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "60s"}, {"weight": 60, "pause": "10s"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, failure_limit=2)))
    policy = f"bc-failover-{run}"
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(faults.retrain_policy(policy, "MLOpsFailoverE2E", run)))

    timeline: list[tuple[float, int, str | None]] = []
    with kit.Load(base) as load:
        kit.patch_spec(ns, {"version": v2})
        at30 = kit.watch(ns, lambda s: s.get("canaryWeight") == 30, 180)["stepStartedAt"]
        router_before = kit.router_document(ns)
        assert router_before["candidate"]["weight"] == 30, router_before
        old_leader = faults.leader_pod()
        before = faults.lease()

        faults.kill_process(old_leader)
        killed = time.time()
        faults.fire_alert(cluster_env, {"alertname": "MLOpsFailoverE2E", "namespace": ns, "e2e_run": run})

        # Until the new leader's first fresh analysis: who holds the Lease, and the step and the router never
        # move (the sample that shows the fresh run may show the step it allowed, so it is not among them).
        new_leader, took_over, fresh_at, routers, holders = None, None, None, [], [before["holderIdentity"]]
        deadline = time.monotonic() + FRESH_ANALYSIS_BOUND + 30
        while fresh_at is None and time.monotonic() < deadline:
            holder = faults.lease().get("holderIdentity") or ""
            if holder and holder != holders[-1]:
                holders.append(holder)
            if took_over is None and holder and holder != before["holderIdentity"]:
                # When the new leader wrote the Lease (its acquireTime; same machine clock), not when we polled.
                took_over, new_leader = kit.epoch(faults.lease()["acquireTime"]), holder.rsplit("_", 1)[0]
            router = kit.router_document(ns)
            st = kit.status(ns)
            if any(kit.epoch(a["at"]) > killed for a in st.get("analysis") or []):
                fresh_at = time.time()
                break
            timeline.append((time.time(), st.get("canaryWeight") or 0, st.get("stepStartedAt")))
            routers.append(router)
            time.sleep(0.5)
        assert took_over is not None, f"nobody took the Lease after the kill: {faults.lease()}"
        assert fresh_at is not None, f"no fresh analysis after the kill: {kit.status(ns)}"
        takeover, resumed = took_over - killed, fresh_at - killed
        print(f"\nfailover: leader {old_leader} killed; {new_leader} took the Lease after {takeover:.1f}s, "
              f"first fresh analysis after {resumed:.1f}s (bounds {TAKEOVER_BOUND:.0f}s / {FRESH_ANALYSIS_BOUND:.0f}s)")
        record_property("recovery_s", resumed)
        assert len(holders) == 2, f"more than one handover: {holders}"
        assert takeover <= TAKEOVER_BOUND, takeover
        assert resumed <= FRESH_ANALYSIS_BOUND, resumed
        # Continued from status: the same 30 % step with its original start; the router kept its weights.
        assert timeline and {(w, started) for _, w, started in timeline} == {(30, at30)}, timeline[:5]
        assert all(r["candidate"]["weight"] == 30 and r["generation"] == router_before["generation"]
                   for r in routers), routers[-1]

        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 and s.get("phase") == "Succeeded", 300,
                       seen=lambda s: timeline.append((time.time(), s.get("canaryWeight") or 0, s.get("stepStartedAt"))))
    weights = [w for _, w, _ in timeline]
    while weights and weights[-1] == 0:  # promoted: no canary share any more
        weights.pop()
    assert weights and weights == sorted(weights) and weights[-1] == 60, f"traffic moved back: {weights}"
    assert [h["event"] for h in st["history"] if h["version"] == v2] == ["promoted"], st["history"]
    assert not load.failures(), load.failures()[:5]

    # The alert fired while nobody led: recorded once, one retrain, one ModelVersion, one Job per version.
    def retrain_recorded() -> dict | None:
        rp = faults.policy_status(ns, policy)
        return rp if (rp.get("lastTriggered") or {}).get("modelVersion") else None

    rp = faults.wait_until("the alert's retrain recorded", retrain_recorded, 120, every=2)
    assert (rp.get("lastTriggered") or {}).get("source") == "alert", rp
    retrained = rp["lastTriggered"]["modelVersion"]
    wait_for_phase(ns, "mv", retrained, {"Ready", "Rejected", "Failed"}, 420)
    made = json.loads(kubectl("-n", ns, "get", "mv", "-l", f"mlops.dev/retrainpolicy={policy}", "-o",
                              "json").stdout)["items"]
    assert [m["metadata"]["name"] for m in made] == [retrained], [m["metadata"]["name"] for m in made]
    rp = kit.get(ns, "rp", policy)["status"]
    assert rp["retrains"] == 1, rp
    versions = json.loads(kubectl("-n", ns, "get", "mv", "-o", "json").stdout)["items"]
    assert sorted(m["metadata"]["name"] for m in versions) == sorted([v1, v2, retrained])
    jobs = json.loads(kubectl("-n", ns, "get", "jobs", "-o", "json").stdout)["items"]
    owners = [ref["name"] for j in jobs for ref in j["metadata"].get("ownerReferences", [])
              if ref["kind"] == "ModelVersion"]
    assert sorted(owners) == sorted([v1, v2, retrained]), f"duplicate or missing Jobs: {sorted(owners)}"

    # The new leader exports its leadership and the time without a leader it observed.
    leader_now = faults.leader_pod()
    metrics = operator_metrics()  # the new leader's: the Service selects only the leader
    assert any(s.labels.get("pod") == leader_now and s.value == 1 for s in metrics["mlops_operator_leader"])
    acquired = [s for s in metrics["mlops_operator_leader_transitions"]
                if s.name.endswith("_total") and s.labels.get("event") == "acquired"]
    assert acquired and acquired[0].value >= 1, metrics["mlops_operator_leader_transitions"]
    count = [s for s in metrics["mlops_operator_leaderless_seconds"] if s.name.endswith("_count")]
    total = [s for s in metrics["mlops_operator_leaderless_seconds"] if s.name.endswith("_sum")]
    assert leader_now == new_leader, (leader_now, new_leader)
    assert count[0].value >= 1 and LEASE_DURATION - 1 <= total[0].value, (count, total)
    print(f"leaderless seconds observed by the new leader: {total[0].value:.1f}s")
    # One handover in the whole test: the Lease still names the replica that took it after the kill.
    lease = faults.lease()
    assert lease["holderIdentity"] == holders[-1], (lease, holders)
    assert lease["leaseTransitions"] == before["leaseTransitions"] + 1, (lease, before)
    # The killed pod was replaced by a standby: two replicas again, exactly one labelled leader.
    faults.wait_for_replicas()
    labelled = [p for p in faults.operator_pods() if p["metadata"].get("labels", {}).get("mlops.dev/leader") == "true"]
    assert len(labelled) == 1, [p["metadata"]["name"] for p in labelled]
    if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
        kubectl("-n", ns, "delete", "rp", policy, "--wait=false", check=False)
