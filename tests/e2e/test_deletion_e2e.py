"""Deletion with the installed operator: a served version waits until its deployment moves off (and keeps
serving meanwhile), then goes with exactly its own artifacts; and uninstall: with the operator scaled to
zero, a namespace of objects without finalizers is deleted completely."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import kubectl
from tests.e2e.conftest import wait_until
from tests.e2e.rollout_kit import FAST, MODEL, ROWS, deploy_first, get, status, train, unique_names, watch

pytestmark = pytest.mark.e2e

FINALIZER, DELETE_ARTIFACTS = "mlops.dev/finalizer", "mlops.dev/delete-artifacts"
OPERATOR = ("mlops-system", "mlops-operator")


def deleting_condition(ns: str, name: str) -> dict:
    conditions = ((get(ns, "mv", name) or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Deleting"), {})


def keys_under(s3_client, uri: str) -> list[str]:
    bucket, prefix = uri[len("s3://"):].split("/", 1)
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_given_a_served_version_when_deleted_then_it_serves_until_the_deployment_moves_off_then_goes_with_its_files(
        user_namespace, s3_client):
    ns = user_namespace
    v1, v2 = unique_names("v1", "v2")
    train(ns, {v1: FAST, v2: FAST})
    base = deploy_first(ns, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
                             "spec": {"model": MODEL, "version": v1, "serving": {"replicas": 1},
                                      "traffic": {"router": "builtin"}}})
    uri = get(ns, "mv", v1)["status"]["artifact"]["uri"]
    other = get(ns, "mv", v2)["status"]["artifact"]["uri"]
    kubectl("-n", ns, "annotate", "mv", v1, f"{DELETE_ARTIFACTS}=true")
    wait_until("the finalizer on the served version", lambda: FINALIZER in (get(ns, "mv", v1) or {}).get(
        "metadata", {}).get("finalizers", []))

    kubectl("-n", ns, "delete", "mv", v1, "--wait=false")
    wait_until("Deleting=True InUse", lambda: deleting_condition(ns, v1).get("reason") == "InUse")
    assert "bc (stable)" in deleting_condition(ns, v1)["message"]
    events = json.loads(kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={v1}",
                                "-o", "json").stdout)["items"]
    assert any(e["reason"] == "DeletionWaits" for e in events)
    # the version is held, its files are intact and the deployment keeps serving it
    assert get(ns, "mv", v1)["metadata"].get("deletionTimestamp") and keys_under(s3_client, uri)
    reply = httpx.post(f"{base}/v2/models/{MODEL}/infer", timeout=10, json={"inputs": [
        {"name": "input-0", "shape": [1, len(ROWS[0])], "datatype": "FP64", "data": ROWS[0]}]})
    assert reply.status_code == 200, reply.text
    assert status(ns)["stableVersion"] == v1 and status(ns)["phase"] == "Succeeded"

    kubectl("-n", ns, "patch", "mdep", "bc", "--type=merge", "-p", json.dumps({"spec": {"version": v2}}))
    watch(ns, lambda st: st.get("stableVersion") == v2 and st.get("phase") == "Succeeded", timeout=300)
    wait_until("the version deleted once nothing routes to it", lambda: get(ns, "mv", v1) is None, timeout=120)
    assert keys_under(s3_client, uri) == [] and keys_under(s3_client, other)


def _replicas() -> int:
    got = kubectl("-n", OPERATOR[0], "get", "deployment", OPERATOR[1], "-o", "json")
    return json.loads(got.stdout)["spec"].get("replicas", 1)


def test_given_the_operator_scaled_to_zero_when_a_namespace_of_objects_without_finalizers_is_deleted_then_it_finishes(
        installed_operator):
    ns = f"e2e-uninstall-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    missing_fs = {"featureSet": {"name": "absent"}, "estimator": "sklearn.linear_model.LogisticRegression"}
    objects = [
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "mv-plain"},
         "spec": {"model": MODEL, "training": missing_fs}},
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": "fs"},
         "spec": {"source": {"builtin": "breast_cancer"}, "entityKey": "id",
                  "features": [{"name": "mean radius", "dtype": "float"}]}},
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "rp"},
         "spec": {"model": MODEL, "triggers": {"schedule": "0 3 1 1 *"}, "template": {"training": missing_fs}}},
    ]
    replicas = _replicas()
    try:
        for obj in objects:
            kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(obj))
        # the operator has seen every object (each has a status) and put a finalizer on none of them
        for obj in objects:
            kind, name = obj["kind"].lower(), obj["metadata"]["name"]
            wait_until(f"{kind}/{name} reconciled", lambda: ((get(ns, kind, name) or {}).get("status") or {}).get(
                "observedGeneration"))
            assert not (get(ns, kind, name)["metadata"].get("finalizers")), (kind, name)

        kubectl("-n", OPERATOR[0], "scale", "deployment", OPERATOR[1], "--replicas=0")
        kubectl("-n", OPERATOR[0], "wait", "pods", "-l", "app.kubernetes.io/name=mlops-operator", "--for=delete",
                "--timeout=120s", timeout=150)
        kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", timeout=150)
        assert kubectl("get", "namespace", ns, check=False).returncode != 0
    finally:
        kubectl("-n", OPERATOR[0], "scale", "deployment", OPERATOR[1], f"--replicas={replicas}")
        kubectl("-n", OPERATOR[0], "rollout", "status", f"deployment/{OPERATOR[1]}", "--timeout=180s", timeout=200)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
