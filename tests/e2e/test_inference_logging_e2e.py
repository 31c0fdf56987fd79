"""Inference logging on the local cluster (issue #12, Show 4): a Shadow ModelDeployment with `mirrorPercent: 50`
and `spec.logging` on; requests go through the entry Service (the builtin router); the primary's and the
shadow's Parquet records are read back from MinIO and must be exactly what was sent, joined by id.

The model servers read their artifacts with the read-only Secret (the e2e installs the operator so); the
log writer gets the read-write `mlops-s3` under its own env names, so the objects below exist only if that
split works."""

from __future__ import annotations

import io
import time

import httpx
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from mlops_operator.providers.storage import make_s3_client
from mlops_operator.settings import S3Settings
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e

X = load_breast_cancer(return_X_y=True)[0].round(3)
N = 80


def read_logs(client, bucket: str, prefix: str) -> list[dict]:
    rows: list[dict] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            assert obj["Key"].endswith(".parquet"), obj["Key"]
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            rows += pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def send(base: str) -> dict[str, tuple[list, list]]:
    """N predictions without ids of their own (V1 and V2 alternately), 1-3 rows each: id -> (rows, predictions)."""
    sent: dict[str, tuple[list, list]] = {}
    with httpx.Client(timeout=10) as http:
        for i in range(N):
            rows = X[(7 * i) % 500:(7 * i) % 500 + 1 + i % 3].tolist()
            if i % 2:
                answer = http.post(f"{base}/v1/models/{kit.MODEL}:predict", json={"instances": rows})
                assert answer.status_code == 200, answer.text
                sent[answer.json()["id"]] = (rows, answer.json()["predictions"])
            else:
                answer = http.post(f"{base}/v2/models/{kit.MODEL}/infer", json={"inputs": [
                    {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                     "data": [v for row in rows for v in row]}]})
                assert answer.status_code == 200, answer.text
                sent[answer.json()["id"]] = (rows, answer.json()["outputs"][0]["data"])
            time.sleep(0.05)
    return sent


def test_given_shadow_at_50_percent_with_logging_when_requests_are_sent_then_logged_pairs_match_them(
        user_namespace, s3_env):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 40})
    strategy = {"type": "Shadow", "shadow": {"mirrorPercent": 50, "duration": "30m", "minAgreement": 0.5,
                                             "autoPromote": False}}
    md = kit.deployment(v1, strategy, kit.analysis(kit.ERROR_RATE))
    md["spec"]["logging"] = {"sampleRate": 1.0, "batchRows": 25, "flushInterval": "2s", "maxBufferRows": 1000}
    base = kit.deploy_first(ns, md)

    kit.patch_spec(ns, {"version": v2})
    kit.watch(ns, lambda s: s.get("candidateVersion") == v2 and s.get("currentStep") == 1, 180)
    assert kit.router_document(ns)["shadow"]["percent"] == 50, kit.router_document(ns)
    kit.wait_ready(base, timeout=30)
    sent = send(base)
    assert len(sent) == N, "ids must be unique"

    s3 = make_s3_client(S3Settings.model_validate({
        "s3_endpoint_url": s3_env["S3_ENDPOINT_URL"], "s3_bucket": s3_env["S3_BUCKET"],
        "aws_access_key_id": s3_env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": s3_env["AWS_SECRET_ACCESS_KEY"]}))
    bucket, root = s3_env["S3_BUCKET"], f"inference-logs/{ns}/bc/"
    try:
        deadline, shadow_seen, steady_since = time.monotonic() + 90, -1, time.monotonic()
        while True:
            primary = [r for r in read_logs(s3, bucket, f"{root}{v1}/primary/") if r["request_id"] in sent]
            shadow = read_logs(s3, bucket, f"{root}{v2}/shadow/")
            if len(shadow) != shadow_seen:
                shadow_seen, steady_since = len(shadow), time.monotonic()
            if len(primary) >= N and time.monotonic() - steady_since > 6:  # three flush intervals without news
                break
            assert time.monotonic() < deadline, f"after 90 s: {len(primary)} of {N} primary records, {len(shadow)} shadow"
            time.sleep(2)

        # The primary logged every request exactly once, with what was sent and what was answered.
        assert len(primary) == N
        assert {r["request_id"]: (r["inputs"], r["outputs"]) for r in primary} == sent
        assert {(r["version"], r["role"], r["model"]) for r in primary} == {(v1, "primary", kit.MODEL)}
        # The shadow logged the mirrored share (about half) under the primary's ids: every shadow record has
        # its primary record, with the same inputs and as many predictions.
        by_id = {r["request_id"]: r for r in primary}
        assert 0.25 * N <= len(shadow) <= 0.75 * N, f"{len(shadow)} of {N} mirrored at 50 %"
        assert len({r["request_id"] for r in shadow}) == len(shadow)
        for record in shadow:
            assert record["request_id"] in by_id, f"shadow record {record['request_id']} has no primary record"
            pair = by_id[record["request_id"]]
            assert record["inputs"] == pair["inputs"] and len(record["outputs"]) == len(pair["outputs"])
            assert (record["version"], record["role"]) == (v2, "shadow")
        agree = sum(a == b for r in shadow for a, b in zip(r["outputs"], by_id[r["request_id"]]["outputs"]))
        assert agree / sum(len(r["outputs"]) for r in shadow) > 0.8  # two forests on the same data mostly agree
    finally:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root)
                for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
