"""Online features on the real cluster: a FeatureSet with spec.online materializes its newest values per entity
into the local Redis; a ModelDeployment whose version was trained on it answers {"entities": [...]} on V1 and V2
exactly as the snapshot's fitted transform + the estimator do in-process; a value past its TTL is refused
naming the entity, then imputed once the FeatureSet says onMissing: impute; and an equal FeatureSet name in a
second namespace neither leaks into nor reads from the first.

Lean by design: one FeatureSet per namespace, one trained version, one deployment."""

from __future__ import annotations

import io
import json
import time

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase
from tests.e2e.test_featureset_e2e import condition, s3_bytes, s3_json, unique, wait_fs

pytestmark = pytest.mark.e2e

COLUMNS = ["mean radius", "mean texture", "mean smoothness", "worst concave points"]
FEATURES = [{"name": "mean radius", "transform": "standardize", "impute": {"strategy": "mean"}},
            {"name": "mean texture", "transform": "minmax", "impute": {"strategy": "median"}},
            {"name": "mean smoothness", "impute": {"strategy": "constant", "value": "0.1"}},
            {"name": "worst concave points", "transform": "bucketize", "boundaries": [0.05, 0.1, 0.15, 0.2],
             "impute": {"strategy": "median"}}]
STALE_IDS = [0, 1, 2]  # their newest row is two days old: past the 1h TTL


def source_frame(now: float, scale: float = 1.0, id_offset: int = 0, rows: int | None = None) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.data[COLUMNS].copy() * scale
    frame["target"] = data.target
    frame.insert(0, "id", np.arange(len(frame)) + id_offset)
    stamps = np.full(len(frame), now - 600.0)
    stamps[STALE_IDS] = now - 2 * 86400
    frame.insert(1, "ts", pd.to_datetime(stamps, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return frame if rows is None else frame.head(rows)


def put_csv(s3, bucket: str, key: str, frame: pd.DataFrame) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=frame.to_csv(index=False).encode())
    return f"s3://{bucket}/{key}"


def online_featureset(name: str, uri: str, on_missing: str = "reject") -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": name},
            "spec": {"source": {"uri": uri, "format": "csv"}, "entityKey": "id", "timestampColumn": "ts",
                     "target": "target", "features": FEATURES,
                     "online": {"enabled": True, "ttl": "1h", "onMissing": on_missing}}}


def post(base: str, v2: bool, entities: list[dict], model: str = kit.MODEL) -> httpx.Response:
    path = f"/v2/models/{model}/infer" if v2 else f"/v1/models/{model}:predict"
    return httpx.post(base + path, json={"entities": entities}, timeout=10)


def answers(response: httpx.Response, v2: bool) -> list:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"] if v2 else response.json()["predictions"]


def test_given_online_features_then_entities_are_served_without_skew_ttl_enforced_and_namespaces_apart(
        user_namespace, second_namespace, s3_client, s3_env, cluster_env):
    from mlops_operator.features.transform import FeatureTransformer
    from mlops_operator.runtime.online_store import OnlineStore

    started = time.monotonic()
    ns, other, fs, mv = user_namespace, second_namespace, unique("cust"), unique("cust-mv")
    now, bucket = time.time(), s3_env["S3_BUCKET"]
    mine = source_frame(now)
    theirs = source_frame(now, scale=3.0, id_offset=0, rows=40)  # equal ids 0..39, other values
    theirs = pd.concat([theirs, source_frame(now, id_offset=10_000, rows=5)])  # and ids only they have
    uri = put_csv(s3_client, bucket, f"tests/online-e2e/{ns}/customers.csv", mine)
    other_uri = put_csv(s3_client, bucket, f"tests/online-e2e/{other}/customers.csv", theirs)
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(online_featureset(fs, uri)))
    kubectl("-n", other, "apply", "-f", "-", input=json.dumps(online_featureset(fs, other_uri)))
    version = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": mv},
               "spec": {"model": kit.MODEL, "training": {
                   "featureSet": {"name": fs}, "estimator": "sklearn.linear_model.LogisticRegression",
                   "hyperparameters": {"max_iter": 500}, "metrics": ["accuracy"]}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(version))

    published = lambda s: condition(s, "OnlineServing").get("status") == "True"  # noqa: E731
    st = wait_fs(ns, fs, published)
    assert st["online"]["version"] == "v1" and st["online"]["entities"] == len(mine), st["online"]
    assert condition(st, "OnlineServing")["reason"] == "Published"
    st_other = wait_fs(other, fs, published)
    assert st_other["online"]["entities"] == len(theirs) and st_other["online"]["key"] == f"{other}/{fs}"

    mv_obj = wait_for_phase(ns, "mv", mv, {"Ready", "Rejected", "Failed"}, 420)
    assert mv_obj["status"]["phase"] == "Ready", mv_obj["status"]
    base = kit.deploy_first(ns, kit.deployment(mv, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE), name="cust"))

    # Served by entity == the snapshot's fitted transform + the estimator, in-process, on the newest rows.
    snap = st["versions"][-1]["uri"]
    doc = s3_json(s3_client, snap, "transform.json")
    pipeline = joblib.load(io.BytesIO(s3_bytes(s3_client, mv_obj["status"]["artifact"]["uri"], "model.joblib")))
    ids = [int(i) for i in mine["id"].sample(24, random_state=1) if i not in STALE_IDS]
    raw = mine.set_index("id").loc[ids, COLUMNS].astype(float)
    expected = pipeline[-1].predict(FeatureTransformer(doc).transform(raw)).tolist()
    assert len(set(expected)) == 2, expected  # both classes: a constant answer cannot pass
    for v2 in (False, True):
        assert answers(post(base, v2, [{"id": i} for i in ids]), v2) == expected

    # Past the TTL: refused naming the entity (policy reject), on V1 and V2; an id only the other namespace
    # holds is unknown here.
    for v2 in (False, True):
        stale = post(base, v2, [{"id": ids[0]}, {"id": STALE_IDS[0]}])
        assert stale.status_code == 422 and f"id {STALE_IDS[0]}" in stale.json()["error"], stale.text
    unknown = post(base, False, [{"id": 10_000}])
    assert unknown.status_code == 404 and "10000" in unknown.json()["error"], unknown.text

    # The other namespace's vectors sit under its own keys with its own values.
    store = OnlineStore.from_env({"MLOPS_ONLINE_STORE_URL": cluster_env["REDIS_URL"],
                                  "REDIS_PASSWORD": cluster_env["REDIS_PASSWORD"]})
    mine_10, theirs_10 = store.read(ns, fs, ["10"])[1][0], store.read(other, fs, ["10"])[1][0]
    assert json.loads(mine_10)["v"] == pytest.approx(mine.loc[10, COLUMNS].tolist())
    assert json.loads(theirs_10)["v"] == pytest.approx(theirs.iloc[10][COLUMNS].astype(float).tolist())

    # onMissing: impute (an online edit + a materialization request): the expired entity is now answered with
    # every feature imputed by the fitted transform, never with its old values.
    kubectl("-n", ns, "patch", "fs", fs, "--type=merge", "-p",
            json.dumps({"spec": {"online": {"enabled": True, "ttl": "1h", "onMissing": "impute"}}}))
    kubectl("-n", ns, "annotate", "fs", fs, "--overwrite", "mlops.dev/materialize=impute")
    wait_fs(ns, fs, lambda s: (s.get("online") or {}).get("version") == "v2" and published(s))
    imputed = pipeline[-1].predict(FeatureTransformer(doc).transform(
        pd.DataFrame([[np.nan] * len(COLUMNS)], columns=COLUMNS))).tolist()
    for v2 in (False, True):
        assert answers(post(base, v2, [{"id": STALE_IDS[0]}, {"id": ids[0]}]), v2) == imputed + expected[:1]
    print(f"online e2e took {time.monotonic() - started:.0f}s")
