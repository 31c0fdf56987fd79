"""FeatureSet on the real cluster: a materialize Job writes a versioned snapshot to MinIO, a ModelVersion trains
on it, and the served model answers raw rows exactly as the snapshot's fitted transform + the estimator do
in-process (no training/serving skew). Re-materialization on a spec edit, on request and on schedule; a
quality policy that fails publishes nothing and says why."""

from __future__ import annotations

import io
import json
import math
import time
import uuid

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase, wait_reconciles

pytestmark = pytest.mark.e2e

FEATURES = [
    {"name": "mean radius", "transform": "standardize", "impute": {"strategy": "mean"}},
    {"name": "mean texture", "transform": "minmax", "impute": {"strategy": "median"}},
    {"name": "mean area", "transform": "log1p", "checks": {"max": 2000}},
    {"name": "worst concave points", "transform": "bucketize", "boundaries": [0.05, 0.1, 0.15, 0.2]},
    {"name": "mean smoothness", "impute": {"strategy": "constant", "value": "0.1"},
     "checks": {"min": 0, "max": 1, "maxMissingFraction": 0.1}},
    {"name": "worst radius", "transform": "standardize"},
]


def featureset(name: str, features: list[dict] | None = None, **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": name},
            "spec": {"source": {"builtin": "breast_cancer"}, "target": "target",
                     "features": features or FEATURES, "qualityPolicy": {"onViolation": "warn"}, **spec}}


def fs_status(ns: str, name: str) -> dict:
    return (kit.get(ns, "fs", name) or {}).get("status") or {}


def wait_fs(ns: str, name: str, until, timeout: float = 240) -> dict:
    deadline, st = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        st = fs_status(ns, name)
        if until(st):
            return st
        time.sleep(1)
    logs = kubectl("-n", "mlops-system", "logs", "deployment/mlops-operator", "--tail=30", check=False).stdout
    raise AssertionError(f"FeatureSet {name}: condition not met in {timeout}s; status={st}\n{logs}")


def condition(st: dict, type_: str) -> dict:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def s3_json(s3, uri: str, name: str) -> dict:
    return json.loads(s3_bytes(s3, uri, name))


def s3_bytes(s3, uri: str, name: str) -> bytes:
    """A committed file: the manifest at the prefix names the attempt directory its writer used."""
    bucket, prefix = uri[len("s3://"):].split("/", 1)
    prefix = prefix.rstrip("/") + "/"
    if name != "manifest.json":
        attempt = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read()).get("attempt")
        prefix += f"{attempt}/" if attempt else ""
    return s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def test_given_a_featureset_then_materialized_trained_on_and_served_without_skew(user_namespace, s3_client):
    from mlops_operator.features.transform import FeatureTransformer

    ns, fs, mv = user_namespace, unique("bc-fs"), unique("bc-fsmv")
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(featureset(fs)))
    # The ModelVersion is applied at once: it waits (Pending) for the first snapshot, then trains on it.
    version = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": mv},
               "spec": {"model": kit.MODEL, "training": {
                   "featureSet": {"name": fs}, "estimator": "sklearn.linear_model.LogisticRegression",
                   "hyperparameters": {"max_iter": 500}, "metrics": ["accuracy", "roc_auc"]},
                   "gates": {"minMetrics": {"accuracy": 0.85}}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(version))

    st = wait_fs(ns, fs, lambda s: s.get("phase") in ("Ready", "Failed"))
    assert st["phase"] == "Ready" and st["latestVersion"] == "v1", st
    snap = st["versions"][-1]
    assert snap["rows"] == 569 and snap["trigger"] == "Created" and snap["generation"] == 1, snap
    assert snap["uri"].endswith(f"/features/{ns}/{fs}/v1/"), snap
    # "mean area" has values above 2000: under policy warn the snapshot is published with the violation.
    assert st["quality"]["passed"] is False and snap["qualityPassed"] is False, st["quality"]
    assert any(v["feature"] == "mean area" and v["check"] == "max" for v in st["quality"]["violations"])
    assert condition(st, "QualityWarning")["status"] == "True" and condition(st, "Ready")["status"] == "True"

    s3 = s3_client
    manifest = s3_json(s3, snap["uri"], "manifest.json")
    assert {"data.parquet", "transform.json", "stats.json"} <= set(manifest["files"])
    assert manifest["files"]["data.parquet"]["sha256"] == snap["sha256"]
    doc = s3_json(s3, snap["uri"], "transform.json")
    assert doc["inputColumns"] == [f["name"] for f in FEATURES] and doc["target"] == "target"
    data = pd.read_parquet(io.BytesIO(s3_bytes(s3, snap["uri"], "data.parquet")))
    assert len(data) == 569 and set(doc["inputColumns"]) | {"target"} <= set(data.columns)

    mv_obj = wait_for_phase(ns, "mv", mv, {"Ready", "Rejected", "Failed"}, 420)
    assert mv_obj["status"]["phase"] == "Ready", mv_obj["status"]
    lineage = mv_obj["status"]["lineage"]
    assert lineage["featureSet"] == fs and lineage["featureSetVersion"] == "v1", lineage
    report = s3_json(s3, mv_obj["status"]["artifact"]["uri"], "metrics.json")
    assert report["data"]["source"] == f"featureset:{fs}/v1" and report["data"]["sha256"] == snap["sha256"]

    md = kit.deployment(mv, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE), name="bcfs")
    base = kit.deploy_first(ns, md)
    sample = data.sample(24, random_state=0)  # both classes, so a constant answer cannot pass
    raw = sample[doc["inputColumns"]].astype(float)
    raw.iloc[0, 0] = np.nan  # "mean radius" missing: imputed with the snapshot's fitted mean
    raw.iloc[1, 1] = np.nan  # "mean texture" missing: imputed with its median
    rows = [[None if math.isnan(x) else x for x in r] for r in raw.to_numpy().tolist()]
    v1 = httpx.post(f"{base}/v1/models/{kit.MODEL}:predict", json={"instances": rows}, timeout=10)
    assert v1.status_code == 200, v1.text
    v2 = httpx.post(f"{base}/v2/models/{kit.MODEL}/infer", timeout=10, json={
        "inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]})
    assert v2.status_code == 200, v2.text
    # In-process: the SNAPSHOT's fitted transform (not the model's copy), then the trained estimator.
    pipeline = joblib.load(io.BytesIO(s3_bytes(s3, mv_obj["status"]["artifact"]["uri"], "model.joblib")))
    expected = pipeline[-1].predict(FeatureTransformer(doc).transform(raw)).tolist()
    assert set(expected) == {0, 1}, expected
    assert v1.json()["predictions"] == expected
    assert v2.json()["outputs"][0]["data"] == expected


def test_given_a_ready_featureset_then_edits_requests_and_the_schedule_make_new_snapshots(user_namespace, s3_client):
    ns, fs = user_namespace, unique("bc-fs")
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(featureset(fs, FEATURES[:2])))
    st = wait_fs(ns, fs, lambda s: s.get("latestVersion") == "v1")
    assert st["phase"] == "Ready" and st["quality"]["passed"] is True, st

    # A spec edit: a new snapshot from the new generation; v1 stays listed.
    kubectl("-n", ns, "patch", "fs", fs, "--type=merge", "-p", json.dumps({"spec": {"features": FEATURES[:3]}}))
    st = wait_fs(ns, fs, lambda s: s.get("latestVersion") == "v2")
    assert [v["version"] for v in st["versions"]] == ["v1", "v2"]
    assert st["versions"][-1]["trigger"] == "SpecChanged" and st["versions"][-1]["generation"] == 2
    assert s3_json(s3_client, st["versions"][-1]["uri"], "transform.json")["inputColumns"] == \
        [f["name"] for f in FEATURES[:3]]

    # A request annotation: acted on once.
    kubectl("-n", ns, "annotate", "fs", fs, "--overwrite", "mlops.dev/materialize=e2e-1")
    st = wait_fs(ns, fs, lambda s: s.get("latestVersion") == "v3")
    assert st["versions"][-1]["trigger"] == "Request" and st["handledRequest"] == "e2e-1"

    # A schedule: every minute; the next snapshot comes from it, with nobody touching the object.
    kubectl("-n", ns, "patch", "fs", fs, "--type=merge", "-p",
            json.dumps({"spec": {"materialize": {"schedule": "* * * * *"}}}))
    st = wait_fs(ns, fs, lambda s: any(v.get("trigger") == "Schedule" for v in s.get("versions") or []), 420)
    # Adding a schedule changes no data: no SpecChanged rebuild came before the scheduled one.
    assert [v["trigger"] for v in st["versions"]][3:] == ["Schedule"], st["versions"]
    assert st.get("nextScheduledAt"), st
    numbers = [int(v["version"][1:]) for v in st["versions"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), st["versions"]


def test_given_a_failing_quality_policy_then_nothing_is_published_and_the_reason_is_shown(user_namespace, s3_client,
                                                                                          s3_env):
    ns, fs = user_namespace, unique("bc-fs")
    strict = [dict(FEATURES[2], checks={"max": 1000})]  # 92 of 569 tumours are larger: the check fails
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(featureset(fs, strict, qualityPolicy={"onViolation": "fail"})))
    st = wait_fs(ns, fs, lambda s: s.get("phase") == "Failed")
    assert "latestVersion" not in st and not st.get("versions"), st
    materialized = condition(st, "Materialized")
    assert materialized["status"] == "False" and materialized["reason"] == "QualityCheckFailed", materialized
    assert "mean area" in materialized["message"], materialized
    assert any(v["feature"] == "mean area" and v["check"] == "max" for v in st["quality"]["violations"])
    deadline, reasons = time.monotonic() + 30, set()
    while time.monotonic() < deadline and "QualityCheckFailed" not in reasons:  # events are posted after status
        events = kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={fs}", "-o", "json").stdout
        reasons = {e["reason"] for e in json.loads(events)["items"]}
        time.sleep(1)
    assert "QualityCheckFailed" in reasons, reasons
    listed = s3_client.list_objects_v2(Bucket=s3_env["S3_BUCKET"], Prefix=f"features/{ns}/{fs}/")
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")
    # Not retried by itself: the same spec would fail the same way (three more passes over it later).
    wait_reconciles("FeatureSet", "featuresets", passes=3)
    again = fs_status(ns, fs)
    assert again["phase"] == "Failed" and again.get("lastVersionNumber") == 1, again

