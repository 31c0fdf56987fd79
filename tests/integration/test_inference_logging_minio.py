"""Inference logging with the real server (`serve.build_app`, loopback socket) and the real MinIO.

The model is loaded with the READ-ONLY user (as a serving pod with `MLOPS_SERVING_S3_SECRET` does) and the
log writer gets the read-write user under its own names (`MLOPS_LOG_AWS_*`). Then the same server with the
writer pointed at a closed port: every request still answers 200 and the lost records are counted.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlops_operator.providers.storage import ArtifactStore
from mlops_operator.runtime.serve import ServeSettings, build_app
from mlops_operator.runtime.serve_asgi import LoopbackServer
from mlops_operator.runtime.serve_logging import LogSettings
from mlops_operator.runtime.train_artifacts import MODEL_FILE, serialize_model
from mlops_operator.settings import S3Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = "iris-log"
X, Y = load_iris(return_X_y=True)


def s3(env: dict[str, str], key: str, secret: str, endpoint: str | None = None) -> S3Settings:
    return S3Settings.model_validate({"s3_endpoint_url": endpoint or env["S3_ENDPOINT_URL"], "s3_bucket": env["S3_BUCKET"],
                                      "aws_access_key_id": key, "aws_secret_access_key": secret})


@pytest.fixture()
def writer(s3_env) -> ArtifactStore:
    return ArtifactStore.from_settings(s3(s3_env, s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]))


@pytest.fixture()
def reader(s3_env, cluster_env) -> ArtifactStore:
    if not cluster_env.get("S3_READONLY_ACCESS_KEY_ID"):
        pytest.fail(".local/env has no S3_READONLY_* keys: run `make cluster-up` (it creates the read-only user)")
    return ArtifactStore.from_settings(s3(s3_env, cluster_env["S3_READONLY_ACCESS_KEY_ID"],
                                          cluster_env["S3_READONLY_SECRET_ACCESS_KEY"]))


def _delete(store: ArtifactStore, bucket: str, prefix: str) -> None:
    listed = store._client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    if listed:
        store._client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})


@pytest.fixture()
def version(s3_env, writer: ArtifactStore) -> Iterator[tuple[str, str]]:
    """A committed model version and a fresh namespace name for its logs; both removed afterwards."""
    estimator = LogisticRegression(max_iter=1000).fit(X, Y)
    key = f"tests/logging/models/{MODEL}/{uuid.uuid4().hex[:10]}/"
    prefix = f"s3://{s3_env['S3_BUCKET']}/{key}"
    writer.write_version(prefix, {MODEL_FILE: serialize_model(estimator)})
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    yield prefix, namespace
    _delete(writer, s3_env["S3_BUCKET"], key)
    _delete(writer, s3_env["S3_BUCKET"], f"inference-logs/{namespace}/")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connections are refused


def log_settings(namespace: str, store_env: S3Settings, **kw) -> LogSettings:
    return LogSettings.model_validate({
        "sample_rate": 1.0, "batch_rows": 5, "flush_interval": 0.3, "max_buffer_rows": 1000, "namespace": namespace,
        "deployment": "iris", "s3_endpoint_url": store_env.s3_endpoint_url, "s3_bucket": store_env.s3_bucket,
        "aws_access_key_id": store_env.aws_access_key_id, "aws_secret_access_key": store_env.aws_secret_access_key,
        **kw})


def counted(text: str, result: str, version: str) -> float:
    wanted = {"model": MODEL, "version": version, "role": "stable", "result": result}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_inference_log_records_total" and sample.labels == wanted:
                return sample.value
    return 0.0


async def serve_requests(app, n: int, settle: str) -> tuple[list[tuple[str, list, list]], float, str]:
    """Send n requests (V1 and V2 alternately), wait until `settle` counts all of them; return what was sent."""
    sent: list[tuple[str, list, list]] = []
    version = app.model.version
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        deadline = time.monotonic() + 30
        while (await client.get("/v2/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, "the model never became ready"
            await asyncio.sleep(0.1)
        rng = np.random.default_rng(1)
        for i in range(n):
            rows = X[rng.choice(len(X), size=1 + i % 3)].round(2)
            if i % 2:
                answer = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.tolist()})
                assert answer.status_code == 200, answer.text
                sent.append((answer.json()["id"], rows.tolist(), answer.json()["predictions"]))
            else:
                answer = await client.post(f"/v2/models/{MODEL}/infer", json={"id": f"v2-{i}", "inputs": [
                    {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]})
                assert answer.status_code == 200, answer.text
                sent.append((f"v2-{i}", rows.tolist(), answer.json()["outputs"][0]["data"]))
        deadline = time.monotonic() + 30
        while counted(metrics := (await client.get("/metrics")).text, settle, version) < n:
            assert time.monotonic() < deadline, f"{settle} never reached {n}: {counted(metrics, settle, version)}"
            await asyncio.sleep(0.1)
    return sent, counted(metrics, "written", version), metrics


async def test_given_sample_rate_one_when_predicting_then_parquet_in_minio_holds_exactly_what_was_sent(
        s3_env, version, reader, writer):
    prefix, namespace = version
    cfg = log_settings(namespace, s3(s3_env, s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]))
    app = build_app(ServeSettings(model=MODEL, model_version="iris-v1", role="stable", artifact_prefix=prefix),
                    reader, cfg)
    sent, written, metrics = await serve_requests(app, 23, "written")
    assert written == 23 and counted(metrics, "failed", "iris-v1") == 0 and counted(metrics, "dropped", "iris-v1") == 0

    key_prefix = f"inference-logs/{namespace}/iris/iris-v1/primary/"
    keys = [o["Key"] for o in writer._client.list_objects_v2(Bucket=s3_env["S3_BUCKET"], Prefix=key_prefix)["Contents"]]
    assert keys and all(k.endswith(".parquet") for k in keys)
    rows = []
    for key in keys:
        table = pq.read_table(io.BytesIO(writer._client.get_object(Bucket=s3_env["S3_BUCKET"], Key=key)["Body"].read()))
        assert table.num_rows <= 5  # batch_rows
        rows += table.to_pylist()
    logged = {r["request_id"]: r for r in rows}
    assert len(rows) == len(logged) == 23
    assert {rid: (inputs, outputs) for rid, inputs, outputs in sent} == {
        rid: (r["inputs"], r["outputs"]) for rid, r in logged.items()}
    assert {(r["model"], r["version"], r["role"]) for r in rows} == {(MODEL, "iris-v1", "primary")}
    assert {r["protocol"] for r in rows} == {"v1", "v2"}


async def test_given_s3_unreachable_for_the_log_writer_when_predicting_then_200s_and_failures_counted(
        s3_env, version, reader):
    prefix, namespace = version
    dead = s3(s3_env, s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"],
              endpoint=f"http://127.0.0.1:{closed_port()}")
    app = build_app(ServeSettings(model=MODEL, model_version="iris-v2", role="stable", artifact_prefix=prefix),
                    reader, log_settings(namespace, dead))
    started = time.monotonic()
    sent, written, metrics = await serve_requests(app, 12, "failed")  # serve_requests asserts every 200
    assert len(sent) == 12 and written == 0 and counted(metrics, "failed", "iris-v2") == 12
    assert time.monotonic() - started < 60
