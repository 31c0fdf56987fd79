"""Point-in-time training sets on the real cluster, against a leak trap (tests/leak_trap.py): each label's
feature value recorded AFTER the label equals it, the value known at the label's time is noise.

- The FeatureSet snapshot keeps every (entity, event time) row of the history; its online store keeps the newest.
- A ModelVersion trained through the operator on the FeatureSet + the labels scores near chance, while a naive
  latest-value join of the same data, computed here in-process, scores ~1.0 (the trap is real).
- The same FeatureSet and ModelVersion names in a second namespace, on honest data (the value known at the
  label's time is the label), score ~1.0: neither namespace reads the other's snapshot or labels.
- A maxAge no feature value can meet drops every label: the version fails, its message naming the cause.

Lean: three training Jobs and two materializations run in parallel; one apply per object, waits on phases."""

from __future__ import annotations

import hashlib
import json
import time

import pandas as pd
import pytest

from tests import leak_trap as trap
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase
from tests.e2e.test_featureset_e2e import s3_json, unique, wait_fs

pytestmark = pytest.mark.e2e


def put_csv(s3, bucket: str, key: str, frame: pd.DataFrame) -> tuple[str, str]:
    body = frame.to_csv(index=False).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}", hashlib.sha256(body).hexdigest()


def history_featureset(name: str, uri: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": name},
            "spec": {"source": {"uri": uri, "format": "csv"}, "entityKey": trap.ENTITY,
                     "timestampColumn": trap.FEATURE_TIME, "online": {"enabled": True, "ttl": "1h"},
                     "features": [{"name": f, "transform": "standardize"} for f in trap.FEATURES]}}


def labelled_version(name: str, fs: str, labels_uri: str, **labels: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": kit.MODEL, "training": {
                "featureSet": {"name": fs, "labels": {"source": {"uri": labels_uri},
                                                      "timestampColumn": trap.LABEL_TIME,
                                                      "labelColumn": trap.LABEL, **labels}},
                "estimator": "sklearn.linear_model.LogisticRegression", "metrics": ["accuracy"],
                "split": {"testFraction": 0.25, "seed": 42}}}}


def test_given_a_leak_trap_then_point_in_time_training_scores_chance_and_namespaces_stay_apart(
        user_namespace, second_namespace, s3_client, s3_env, cluster_env):
    from mlops_operator.runtime.online_store import OnlineStore

    started = time.monotonic()
    ns, other, fs, mv, too_old = user_namespace, second_namespace, unique("churn"), unique("churn-mv"), unique("old")
    bucket = s3_env["S3_BUCKET"]
    data = {ns: trap.leak_trap(), other: trap.leak_trap(honest=True)}
    uploaded = {}
    for namespace, (features, labels) in data.items():
        features_uri, _ = put_csv(s3_client, bucket, f"tests/pit-e2e/{namespace}/features.csv", features)
        labels_uri, labels_sha = put_csv(s3_client, bucket, f"tests/pit-e2e/{namespace}/labels.csv", labels)
        uploaded[namespace] = (labels_uri, labels_sha)
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(history_featureset(fs, features_uri)))
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(labelled_version(mv, fs, labels_uri)))
    # Every feature value is 30 minutes from its label: a 10 minute bound leaves no label to train on.
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(labelled_version(too_old, fs, uploaded[ns][0],
                                                                             maxAge="10m")))

    # The trap is real: joining each entity's latest value (what a join without time does) scores ~1.0.
    features, labels = data[ns]
    assert trap.accuracy_of(trap.naive_latest_join(features, labels)) >= 0.99

    store = OnlineStore.from_env({"MLOPS_ONLINE_STORE_URL": cluster_env["REDIS_URL"],
                                  "REDIS_PASSWORD": cluster_env["REDIS_PASSWORD"]})
    for namespace in (ns, other):  # the snapshot keeps the history: both rows of every entity
        st = wait_fs(namespace, fs, lambda s: s.get("phase") in ("Ready", "Failed") and s.get("online"))
        assert st["phase"] == "Ready" and st["versions"][-1]["rows"] == len(data[namespace][0]), st
        # ... while the online store holds each entity's newest row only, under the namespace's own key.
        history = data[namespace][0]
        assert st["online"]["entities"] == history[trap.ENTITY].nunique(), st["online"]
        newest = history[history[trap.ENTITY] == "c0"].iloc[-1]
        vector = json.loads(store.read(namespace, fs, ["c0"])[1][0])
        assert vector["t"] == pd.Timestamp(newest[trap.FEATURE_TIME]).timestamp(), vector
        assert vector["v"] == pytest.approx([newest[f] for f in trap.FEATURES]), vector

    results = {}
    for namespace in (ns, other):
        obj = wait_for_phase(namespace, "mv", mv, {"Ready", "Rejected", "Failed"}, 300)
        assert obj["status"]["phase"] == "Ready", obj["status"]
        results[namespace] = obj["status"]
    assert results[ns]["metrics"]["accuracy"] <= 0.7, results[ns]["metrics"]  # near chance: nothing leaked
    assert results[other]["metrics"]["accuracy"] >= 0.95, results[other]["metrics"]  # its own honest data

    for namespace, status in results.items():
        labels_uri, labels_sha = uploaded[namespace]
        lineage = status["lineage"]
        assert lineage["featureSet"] == fs and lineage["featureSetVersion"] == "v1", lineage
        assert lineage["labels"]["source"] == labels_uri and "equal times count as known" in lineage["labels"]["asOf"]
        assert lineage["labels"]["joined"] == lineage["labels"]["labels"] == len(data[namespace][1]), lineage
        report = s3_json(s3_client, status["artifact"]["uri"], "metrics.json")["data"]
        assert report["labels"]["sha256"] == labels_sha and f"/features/{namespace}/{fs}/v1/" in \
            report["featureSet"]["uri"], report
        assert report["rows"] == len(data[namespace][1])

    failed = wait_for_phase(ns, "mv", too_old, {"Ready", "Rejected", "Failed"}, 300)["status"]
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert failed["phase"] == "Failed" and ready["reason"] == "InvalidTrainingInput", failed
    assert ready["message"].startswith("no label row of training.featureSet.labels") and \
        "400 have only values older than maxAge" in ready["message"], ready
    print(f"point-in-time e2e took {time.monotonic() - started:.0f}s; accuracy: trap {results[ns]['metrics']}, "
          f"honest {results[other]['metrics']}")
