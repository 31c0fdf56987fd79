"""Fault scenarios with the installed operator gone for a while: objects and a namespace deleted while no
replica runs (scenario 5), and a leader killed between a rollback and the candidate's scale-down (3)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from mlops_operator.builders.serving import version_name
from tests.conftest import kubectl
from tests.e2e import fault_kit as faults
from tests.e2e import rollout_kit as kit

FINALIZER, DELETE_ARTIFACTS = "mlops.dev/finalizer", "mlops.dev/delete-artifacts"


def _keys(s3_client, uri: str) -> list[str]:
    bucket, prefix = uri[len("s3://"):].split("/", 1)
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


@pytest.mark.faults
@pytest.mark.scenario(5, "objects and a namespace deleted while the operator is down")
def test_given_no_operator_when_objects_and_a_namespace_are_deleted_then_nothing_hangs_and_cleanup_finishes_after(
        user_namespace, s3_client, record_property):
    ns = user_namespace
    kept, plain = kit.unique_names("files", "plain")
    kit.train(ns, {kept: kit.FAST})
    uri = kit.get(ns, "mv", kept)["status"]["artifact"]["uri"]
    kubectl("-n", ns, "annotate", "mv", kept, f"{DELETE_ARTIFACTS}=true")
    faults.wait_until("the finalizer on the version whose files must go", lambda: FINALIZER in (
        (kit.get(ns, "mv", kept) or {}).get("metadata", {}).get("finalizers") or []))
    # Objects with nothing to clean up: a version whose reference is missing, and a whole namespace of them.
    missing = {"featureSet": {"name": "absent"}, "estimator": "sklearn.linear_model.LogisticRegression"}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": plain},
        "spec": {"model": kit.MODEL, "training": missing}}))
    other = f"e2e-gone-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", other)
    objects = [
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "mv"},
         "spec": {"model": kit.MODEL, "training": missing}},
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "rp"},
         "spec": {"model": kit.MODEL, "triggers": {"schedule": "0 3 1 1 *"}, "template": {"training": missing}}},
    ]
    for obj in objects:
        kubectl("-n", other, "apply", "-f", "-", input=json.dumps(obj))
    for where, kind, name in [(ns, "mv", plain), (other, "mv", "mv"), (other, "rp", "rp")]:
        faults.wait_until(f"{kind}/{name} reconciled", lambda: ((kit.get(where, kind, name) or {}).get("status") or {})
                          .get("observedGeneration"))
    try:
        faults.scale_operator(0)
        kubectl("-n", ns, "delete", "mv", kept, plain, "--wait=false")
        kubectl("delete", "namespace", other, "--wait=false")
        # Nothing worth protecting waits for the operator: the plain version and the namespace go now.
        faults.wait_until("the plain version gone", lambda: kit.get(ns, "mv", plain) is None, 60)
        faults.wait_until(f"namespace {other} gone",
                          lambda: kubectl("get", "namespace", other, check=False).returncode != 0, 120, 2)
        # The version whose files must go is held by its finalizer, files intact, until the operator is back.
        held = kit.get(ns, "mv", kept)
        assert held and held["metadata"].get("deletionTimestamp") and FINALIZER in held["metadata"]["finalizers"]
        assert _keys(s3_client, uri), "the files went without the operator"
    finally:
        faults.scale_operator(faults.OPERATOR_REPLICAS)
    back = time.time()
    faults.wait_until("the held version cleaned up and gone", lambda: kit.get(ns, "mv", kept) is None, 180, 2)
    recovered = time.time() - back
    record_property("recovery_s", recovered)
    assert _keys(s3_client, uri) == [], "the version went but its files stayed"
    print(f"\ndeleted while down: finalizer finished {recovered:.1f}s after the operator was scaled up")
    faults.restore_operator()


def _decided(ns: str, candidate: str) -> dict | None:
    """The status once the candidate was rolled back (or, wrongly, promoted)."""
    st = kit.status(ns)
    return st if st.get("phase") == "RolledBack" or st.get("stableVersion") == candidate else None


@pytest.mark.faults
@pytest.mark.scenario(3, "leader killed between rollback and scale-down")
def test_given_a_rollback_when_the_leader_is_killed_before_the_scale_down_then_stable_serves_and_the_candidate_goes(
        user_namespace, record_property):
    ns = user_namespace
    v1, slow = kit.unique_names("v1", "bad")
    kit.train(ns, {v1: kit.FAST, slow: 60})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "2m"}]}}
    # A check the candidate fails for certain: the rollback is the premise here, not what is tested.
    failing = {"name": "always-fails", "query": "vector(1)", "max": 0}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(failing)))
    faults.wait_for_replicas()
    leader = faults.leader_pod()
    restarts_before = faults.restarts()[leader]
    candidate = version_name("bc", slow)

    with kit.Load(base, pause=0.05) as load:
        kit.patch_spec(ns, {"version": slow})
        # The rollback is recorded (traffic back on stable) while the candidate's pods still run: kill now.
        st = faults.wait_until("the rollback recorded", lambda: _decided(ns, slow), 300, 0.2)
        assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
        candidate_left = kit.get(ns, "deployment", candidate) is not None
        faults.kill_process(leader)
        killed = time.time()
        print(f"\nrollback recorded; leader {leader} killed with the candidate Deployment "
              f"{'still there' if candidate_left else 'already gone (the window was missed this time)'}")
        # The new leader finishes the job: the candidate's Deployment goes, all traffic stays on stable.
        faults.wait_until("the candidate scaled down", lambda: kit.get(ns, "deployment", candidate) is None, 180, 1)
        recovered = time.time() - killed
        record_property("recovery_s", recovered)
        assert "candidate" not in kit.router_document(ns), kit.router_document(ns)
        final = kit.status(ns)
        assert final["phase"] == "RolledBack" and final["stableVersion"] == v1, final
        assert [h["event"] for h in final["history"] if h["version"] == slow] == ["rolledBack"], final["history"]
    assert not load.failures(), load.failures()[:5]
    assert load.versions(since=killed) == {v1}
    faults.wait_restarted(leader, restarts_before)
