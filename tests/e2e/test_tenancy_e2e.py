"""One cluster, many teams: equal names in two namespaces never meet, a re-applied version adopts its own
artifact, and the operator verifies an artifact larger than its own memory limit without falling over.

Against the installed operator (`make install`), real Jobs on the node and the real MinIO.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid

import joblib
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import kubectl
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e

FEATURESET = {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": "bc-features"},
              "spec": {"source": {"builtin": "breast_cancer"}, "target": "target",
                       "features": [{"name": "mean radius", "transform": "standardize"},
                                    {"name": "mean texture", "transform": "minmax"},
                                    {"name": "mean area", "transform": "log1p"}]}}
TRAINING = {"featureSet": {"name": "bc-features"}, "estimator": "sklearn.linear_model.LogisticRegression",
            "hyperparameters": {"max_iter": 500}, "metrics": ["accuracy", "roc_auc"]}
VERSION = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "bc-v1"},
           "spec": {"model": "breast-cancer", "training": TRAINING, "gates": {"minMetrics": {"accuracy": 0.8}}}}
POLICY = {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "bc-retrain"},
          "spec": {"model": "breast-cancer", "template": {"training": TRAINING}, "cooldown": "0s",
                   # Started by hand below (mlops.dev/retrain); this alert never fires in the test.
                   "triggers": {"alerts": [{"matchLabels": {"alertname": "TenancyE2eNeverFires"}}]}}}


def apply(namespace: str, obj: dict) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))


def get(namespace: str, kind: str, name: str) -> dict:
    return json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)


def read_committed(s3_client, uri: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest at ``uri`` and every file it names, each checked against its sha256 here, independently."""
    bucket, key = uri[len("s3://"):].split("/", 1)
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key + "manifest.json")["Body"].read())
    base = key + (f"{manifest['attempt']}/" if manifest.get("attempt") else "")
    files = {}
    for name, entry in manifest["files"].items():
        data = s3_client.get_object(Bucket=bucket, Key=base + name)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], (uri, name)
        files[name] = data
    return manifest, files


def events(namespace: str, name: str) -> set[str]:
    out = kubectl("-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return {e["reason"] for e in json.loads(out.stdout)["items"]}


def wait_event(namespace: str, name: str, reason: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while reason not in events(namespace, name):  # events are posted right after the status they announce
        assert time.monotonic() < deadline, f"no {reason} event for {name}: {events(namespace, name)}"
        time.sleep(1)


def test_given_equal_names_in_two_namespaces_when_applied_together_then_each_is_ready_on_its_own_artifact(
        user_namespace, second_namespace, s3_client):
    teams = (user_namespace, second_namespace)
    for ns in teams:
        apply(ns, FEATURESET)
        apply(ns, VERSION)
        apply(ns, POLICY)
        kubectl("-n", ns, "annotate", "rp", "bc-retrain", "mlops.dev/retrain=first", "--overwrite")
    for ns in teams:
        for name in ("bc-v1", "bc-retrain-r1"):
            mv = wait_for_phase(ns, "modelversion", name, {"Ready", "Rejected", "Failed"}, timeout=480)
            assert mv["status"]["phase"] == "Ready", (ns, name, mv["status"])

    for name in ("bc-v1", "bc-retrain-r1"):
        statuses = {ns: get(ns, "modelversion", name)["status"] for ns in teams}
        uris = {ns: s["artifact"]["uri"] for ns, s in statuses.items()}
        assert len(set(uris.values())) == 2, uris  # two artifacts, never one shared
        for ns, status in statuses.items():
            assert f"/models/{ns}/breast-cancer/{name}/" in uris[ns]
            manifest, files = read_committed(s3_client, uris[ns])
            # The manifest names its owner: this namespace's object, nobody else's.
            assert {k: manifest["owner"][k] for k in ("namespace", "kind", "name")} == \
                {"namespace": ns, "kind": "ModelVersion", "name": name}
            assert manifest["owner"]["uid"] == get(ns, "modelversion", name)["metadata"]["uid"]
            assert hashlib.sha256(files["model.joblib"]).hexdigest() == status["artifact"]["sha256"]
            # Lineage from its own namespace's data: the snapshot this namespace's FeatureSet materialized (the
            # retrain trains on a fresh one made for it, bc-v1 on the first).
            versions = get(ns, "featureset", "bc-features")["status"]["versions"]
            snapshot = next(v for v in versions if v["version"] == status["lineage"]["featureSetVersion"])
            assert f"/features/{ns}/bc-features/" in snapshot["uri"]
            metrics = json.loads(files["metrics.json"])
            assert metrics["data"]["featureSet"]["uri"] == snapshot["uri"], metrics["data"]
            model = joblib.load(io.BytesIO(files["model.joblib"]))
            X, y = load_breast_cancer(return_X_y=True, as_frame=True)
            assert (model.predict(X[["mean radius", "mean texture", "mean area"]]) == y).mean() > 0.8


def test_given_a_ready_version_when_deleted_and_reapplied_then_ready_again_on_its_own_artifact_as_adopted(
        user_namespace, s3_client):
    ns = user_namespace
    apply(ns, FEATURESET)
    apply(ns, VERSION)
    first = wait_for_phase(ns, "modelversion", "bc-v1", {"Ready", "Rejected", "Failed"}, timeout=420)
    assert first["status"]["phase"] == "Ready", first["status"]
    manifest_before, _ = read_committed(s3_client, first["status"]["artifact"]["uri"])

    kubectl("-n", ns, "delete", "modelversion", "bc-v1", "--wait=true", timeout=120)
    apply(ns, VERSION)  # an Argo CD replace, a namespace rebuilt from git, a restore
    again = wait_for_phase(ns, "modelversion", "bc-v1", {"Ready", "Rejected", "Failed"}, timeout=240)
    status = again["status"]
    assert status["phase"] == "Ready", status
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Adopted", ready
    assert status["artifact"] == first["status"]["artifact"]
    assert status["metrics"] == first["status"]["metrics"]
    assert "job" not in status.get("lineage", {}), "adopted without training again"
    wait_event(ns, "bc-v1", "Adopted")
    manifest_after, _ = read_committed(s3_client, status["artifact"]["uri"])
    assert manifest_after == manifest_before  # nothing committed was changed


def test_given_a_reapplied_name_with_another_spec_when_applied_then_failed_with_what_to_do_and_artifact_kept(
        user_namespace, s3_client):
    ns = user_namespace
    apply(ns, FEATURESET)
    apply(ns, VERSION)
    first = wait_for_phase(ns, "modelversion", "bc-v1", {"Ready", "Rejected", "Failed"}, timeout=420)
    assert first["status"]["phase"] == "Ready", first["status"]
    kubectl("-n", ns, "delete", "modelversion", "bc-v1", "--wait=true", timeout=120)
    changed = json.loads(json.dumps(VERSION))
    changed["spec"]["training"]["hyperparameters"] = {"max_iter": 800}
    apply(ns, changed)
    failed = wait_for_phase(ns, "modelversion", "bc-v1", {"Ready", "Rejected", "Failed"}, timeout=240)
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert failed["status"]["phase"] == "Failed" and ready["reason"] == "ArtifactExists", failed["status"]
    assert "new name" in ready["message"]
    manifest, _ = read_committed(s3_client, first["status"]["artifact"]["uri"])
    assert manifest["owner"]["uid"] == first["metadata"]["uid"]  # the committed version is untouched


class _Deterministic(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced while read: a 1 GiB upload without 1 GiB in memory."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.sha256(b"mlops").digest() * 32768  # 1 MiB
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.sha.update(self.block[:n])
        self.left -= n
        return n


def test_given_an_artifact_larger_than_the_operators_memory_when_registered_then_verified_and_operator_stays_up(
        user_namespace, s3_client, s3_env):
    size = 1024 ** 3 + 12345  # 1 GiB and change, past the operator's 512Mi limit
    bucket = s3_env["S3_BUCKET"]
    key = f"tests/large/{uuid.uuid4().hex}/"
    limit = kubectl("-n", "mlops-system", "get", "deployment", "mlops-operator", "-o",
                    "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}").stdout
    assert limit and limit.endswith(("Mi", "Gi")), limit
    restarts = lambda: sum(c.get("restartCount", 0) for p in json.loads(kubectl(  # noqa: E731
        "-n", "mlops-system", "get", "pods", "-l", "app.kubernetes.io/name=mlops-operator", "-o", "json").stdout)["items"]
        for c in p["status"].get("containerStatuses", []))
    before = restarts()
    body = _Deterministic(size)
    try:
        s3_client.upload_fileobj(io.BufferedReader(body, buffer_size=8 * 1024 * 1024), bucket, key + "model.joblib")
        sha = body.sha.hexdigest()
        manifest = {"version": 1, "createdAt": "2026-12-07T00:00:00Z",
                    "files": {"model.joblib": {"sha256": sha, "size": size}}}
        s3_client.put_object(Bucket=bucket, Key=key + "manifest.json", Body=json.dumps(manifest).encode())
        apply(user_namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
                               "metadata": {"name": "huge-v1"},
                               "spec": {"model": "huge", "artifact": {"uri": f"s3://{bucket}/{key}", "sha256": sha}}})
        mv = wait_for_phase(user_namespace, "modelversion", "huge-v1", {"Ready", "Rejected", "Failed"}, timeout=600)
        assert mv["status"]["phase"] == "Ready", mv["status"]
        assert mv["status"]["artifact"]["sizeBytes"] == size and mv["status"]["artifact"]["sha256"] == sha
        assert restarts() == before, "the operator restarted while verifying"
    finally:
        listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        if listed:
            s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
