"""Inference logging (runtime/serve_logging.py): sampling by id, the bounded buffer and its counters, the
Parquet batch, the request-path hook, the router's id for the shadow, and the serving pod's env."""

from __future__ import annotations

import asyncio
import io
import uuid

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlops_operator.builders.serving import ServingInput, build_serving_deployment
from mlops_operator.runtime.route_shadow import MIRROR_HEADER, REQUEST_ID_HEADER, answer_id, shadow_headers
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_logging import (
    InferenceLog,
    LogSettings,
    Record,
    object_key,
    sampled,
    to_parquet,
)
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_protocol import FeatureSchema
from mlops_operator.runtime.serve_runtime import ModelRuntime
from mlops_operator.runtime.serve_v2 import Request, Tensor
from mlops_operator.settings import S3Settings

pytestmark = pytest.mark.unit

X, Y = load_iris(return_X_y=True)
SCHEMA = FeatureSchema(4)


class Sink:
    """A writer that keeps what it was given, or fails like an unreachable S3."""

    def __init__(self, fail: bool = False):
        self.objects: dict[str, bytes] = {}
        self.fail = fail

    def __call__(self, key: str, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("S3 unreachable")
        self.objects[key] = data

    def rows(self) -> list[dict]:
        return [row for data in self.objects.values() for row in pq.read_table(io.BytesIO(data)).to_pylist()]


def make_log(sink: Sink, **kw) -> InferenceLog:
    values = dict(model=f"iris-{uuid.uuid4().hex[:8]}", version="v1", role="stable", namespace="team-a",
                  deployment="iris", sample_rate=1.0, batch_rows=10, flush_interval=60.0, max_buffer_rows=100)
    values.update(kw)
    return InferenceLog(sink, lambda: SCHEMA, **values)


def counted(log: InferenceLog, result: str) -> float:
    labels = {"model": log.model, "version": log.version, "role": log.role, "result": result}
    return REGISTRY.get_sample_value("mlops_inference_log_records_total", labels) or 0.0


def v1(rows: np.ndarray, rid: str) -> dict:
    return {"instances": rows.tolist(), "id": rid}


# ------------------------------------------------------------------------------------------ sampling
def test_given_an_id_when_sampled_twice_or_elsewhere_then_the_same_answer():
    ids = [str(uuid.uuid4()) for _ in range(4000)]
    first = [sampled(i, 0.3) for i in ids]
    assert first == [sampled(i, 0.3) for i in ids]  # a second server (the shadow) decides the same
    share = sum(first) / len(ids)
    assert 0.25 < share < 0.35
    # nested: an id sampled at a lower rate is sampled at every higher one
    assert all(sampled(i, 0.6) for i, s in zip(ids, first) if s)
    assert not any(sampled(i, 0.0) for i in ids) and all(sampled(i, 1.0) for i in ids)


# ------------------------------------------------------------------------------------------ buffer
def test_given_a_full_buffer_when_offered_more_then_they_are_dropped_and_counted():
    log = make_log(Sink(), max_buffer_rows=3)
    results = [log.offer(f"r{i}", v1(X[:1], f"r{i}"), np.array([0])) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert len(log) == 3 and counted(log, "dropped") == 2


def test_given_big_requests_when_offered_then_the_byte_bound_drops_them_too():
    log = make_log(Sink(), max_buffer_rows=100, max_buffer_bytes=1000)
    results = [log.offer(f"r{i}", v1(X[:1], f"r{i}"), np.array([0]), size=400) for i in range(4)]
    assert results == [True, True, False, False] and counted(log, "dropped") == 2
    lone = make_log(Sink(), max_buffer_bytes=10)
    assert lone.offer("huge", v1(X[:1], "huge"), np.array([0]), size=5000)  # an empty buffer takes one, whatever its size


async def test_given_a_flush_when_done_then_the_byte_budget_is_free_again():
    log = make_log(Sink(), max_buffer_bytes=1000)
    assert log.offer("a", v1(X[:1], "a"), np.array([0]), size=900)
    assert not log.offer("b", v1(X[:1], "b"), np.array([0]), size=200)
    await log.flush()
    assert log.offer("c", v1(X[:1], "c"), np.array([0]), size=900)


def test_given_a_rate_when_offered_then_only_sampled_ids_are_buffered():
    log = make_log(Sink(), sample_rate=0.5, max_buffer_rows=10_000)
    ids = [f"id-{i}" for i in range(1000)]
    for rid in ids:
        log.offer(rid, v1(X[:1], rid), np.array([0]))
    assert [r.request_id for r in log._buffer] == [i for i in ids if sampled(i, 0.5)]


async def test_given_buffered_records_when_flushed_then_batches_are_written_and_counted():
    sink = Sink()
    log = make_log(sink, batch_rows=4)
    for i in range(10):
        log.offer(f"r{i}", v1(X[i:i + 2], f"r{i}"), np.array([Y[i], Y[i + 1]]))
    assert await log.flush() == 10
    assert len(sink.objects) == 3 and len(log) == 0  # 4 + 4 + 2
    assert counted(log, "written") == 10 and counted(log, "failed") == 0
    assert all(k.startswith("inference-logs/team-a/iris/v1/primary/") and k.endswith(".parquet") for k in sink.objects)
    assert sorted(r["request_id"] for r in sink.rows()) == sorted(f"r{i}" for i in range(10))


async def test_given_s3_down_when_flushed_then_records_fail_counted_and_memory_is_freed():
    log = make_log(Sink(fail=True), batch_rows=4)
    for i in range(6):
        log.offer(f"r{i}", v1(X[:1], f"r{i}"), np.array([0]))
    assert await log.flush() == 0
    assert counted(log, "failed") == 6 and counted(log, "written") == 0 and len(log) == 0


async def test_given_a_full_batch_when_running_then_it_is_written_before_the_interval_and_at_shutdown():
    sink = Sink()
    log = make_log(sink, batch_rows=3, flush_interval=3600.0)
    task = asyncio.create_task(log.run())
    for i in range(3):
        log.offer(f"r{i}", v1(X[:1], f"r{i}"), np.array([0]))
    for _ in range(200):
        if sink.objects:
            break
        await asyncio.sleep(0.01)
    assert len(sink.objects) == 1
    log.offer("last", v1(X[:1], "last"), np.array([0]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {r["request_id"] for r in sink.rows()} == {"r0", "r1", "r2", "last"}


# ------------------------------------------------------------------------------------------ parquet
def test_given_v1_and_v2_records_when_batched_then_the_parquet_schema_and_values_are_the_contract():
    rows = X[:3].copy()
    rows[1, 2] = np.nan
    v2 = Request(model_name="iris", id="b", inputs=[Tensor("input-0", [2, 4], "FP64", X[3:5].ravel().tolist())])
    records = [Record("a", 1_700_000_000.5, v1(rows, "a"), np.array([0, 1, 2]), "shadow"),
               Record("b", 1_700_000_001.0, v2, np.array([2, 2]), "shadow")]
    table = pq.read_table(io.BytesIO(to_parquet(records, SCHEMA, "iris", "v1")))
    assert table.schema.names == ["request_id", "timestamp", "model", "version", "role", "protocol", "inputs", "outputs"]
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("inputs").type == pa.list_(pa.list_(pa.float64()))
    a, b = table.to_pylist()
    assert (a["request_id"], a["role"], a["version"], a["protocol"], b["protocol"]) == ("a", "shadow", "v1", "v1", "v2")
    assert a["timestamp"].timestamp() == 1_700_000_000.5
    assert np.array_equal(np.array(a["inputs"]), rows, equal_nan=True)
    assert b["inputs"] == X[3:5].tolist() and a["outputs"] == [0, 1, 2] and b["outputs"] == [2, 2]


def test_given_string_classes_when_batched_then_outputs_are_strings():
    table = pq.read_table(io.BytesIO(to_parquet([Record("a", 0.0, v1(X[:2], "a"), np.array(["x", "y"]))],
                                                SCHEMA, "m", "v")))
    assert table.schema.field("outputs").type == pa.list_(pa.string())


def test_given_a_time_when_keyed_then_the_documented_layout():
    key = object_key("ns", "bc", "bc-v7", "shadow", 1_700_000_000.25)
    assert key.startswith("inference-logs/ns/bc/bc-v7/shadow/20231114T221320250Z-") and key.endswith(".parquet")


# ------------------------------------------------------------------------------------------ settings
def test_given_writer_credentials_when_resolved_then_they_replace_the_readers_and_are_never_printed(monkeypatch):
    monkeypatch.setenv("MLOPS_LOG_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("MLOPS_LOG_NAMESPACE", "ns")
    monkeypatch.setenv("MLOPS_LOG_DEPLOYMENT", "bc")
    monkeypatch.setenv("MLOPS_LOG_AWS_ACCESS_KEY_ID", "writer")
    monkeypatch.setenv("MLOPS_LOG_AWS_SECRET_ACCESS_KEY", "writer-secret")
    cfg = LogSettings()
    reader = S3Settings.model_validate({"s3_endpoint_url": "http://s3:9000", "s3_bucket": "mlops",
                                        "aws_access_key_id": "reader", "aws_secret_access_key": "r"})
    s3 = cfg.s3(reader)
    assert cfg.enabled and s3.aws_access_key_id.get_secret_value() == "writer"
    assert s3.s3_endpoint_url == "http://s3:9000" and s3.s3_bucket == "mlops"
    assert "writer-secret" not in repr(cfg) + repr(s3)
    monkeypatch.delenv("MLOPS_LOG_AWS_ACCESS_KEY_ID")
    assert LogSettings().s3(reader) is reader


# ------------------------------------------------------------------------------------------ request path
@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(X, Y)


def served(estimator, sink: Sink, role: str = "stable", **kw) -> ServeApp:
    name = f"iris-{uuid.uuid4().hex[:8]}"
    model = SklearnModel(name, "v1", runtime=ModelRuntime(estimator))
    log = InferenceLog(sink, lambda: model.runtime.schema, model=name, version="v1", role=role, namespace="ns",
                       deployment="iris", sample_rate=1.0, **kw)
    return ServeApp(model, ServeMetrics(name, "v1", role), inference_log=log)


async def test_given_logging_when_predicting_v1_and_v2_then_ids_inputs_and_outputs_are_logged(estimator):
    sink = Sink()
    app = served(estimator, sink)
    name = app.model.name
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
        one = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:2].tolist()})).json()
        two = (await http.post(f"/v2/models/{name}/infer", json={"id": "v2-req", "inputs": [
            {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": X[2:5].ravel().tolist()}]})).json()
        bad = await http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 2]]})
    assert bad.status_code == 400  # not answered: not logged
    await app.inference_log.flush()
    logged = {r["request_id"]: r for r in sink.rows()}
    assert set(logged) == {one["id"], "v2-req"}
    assert logged[one["id"]]["inputs"] == X[:2].tolist() and logged[one["id"]]["outputs"] == one["predictions"]
    assert logged["v2-req"]["inputs"] == X[2:5].tolist() and logged["v2-req"]["outputs"] == two["outputs"][0]["data"]


async def test_given_the_routers_id_header_when_the_request_has_no_id_then_it_answers_and_logs_under_it(estimator):
    sink = Sink()
    app = served(estimator, sink, role="shadow")
    name = app.model.name
    headers = {REQUEST_ID_HEADER.decode(): "primary-id"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
        plain = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:1].tolist()}, headers=headers)).json()
        own = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:1].tolist(), "id": "mine"},
                               headers=headers)).json()
    assert plain["id"] == "primary-id" and own["id"] == "mine"  # the request's own id wins


async def test_given_mirrored_and_client_requests_when_logged_then_roles_come_from_the_mirror_mark(estimator):
    sink = Sink()
    app = served(estimator, sink, role="shadow")  # launched as shadow, e.g. since promoted
    name = app.model.name
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
        await http.post(f"/v1/models/{name}:predict", json={"instances": X[:1].tolist(), "id": "copy"},
                        headers={MIRROR_HEADER.decode(): "1"})
        await http.post(f"/v1/models/{name}:predict", json={"instances": X[:1].tolist(), "id": "client"})
    await app.inference_log.flush()
    assert {r["request_id"]: r["role"] for r in sink.rows()} == {"copy": "shadow", "client": "primary"}
    assert sorted(k.split("/")[4] for k in sink.objects) == ["primary", "shadow"]  # one object per role


async def test_given_a_broken_logger_when_predicting_then_the_answer_is_still_200(estimator):
    app = served(estimator, Sink())

    def boom(*_):
        raise RuntimeError("logger bug")

    app.inference_log.offer = boom
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": X[:1].tolist()})
    assert response.status_code == 200


# ------------------------------------------------------------------------------------------ router
def test_given_a_primary_answer_when_mirrored_then_the_shadow_copy_is_marked_and_carries_its_id():
    headers = [(b"content-type", b"application/json"), (REQUEST_ID_HEADER, b"client-sent"), (MIRROR_HEADER, b"0")]
    out = shadow_headers(headers, b'{"predictions":[1],"id":"abc"}')
    assert out == [(b"content-type", b"application/json"), (MIRROR_HEADER, b"1"), (REQUEST_ID_HEADER, b"abc")]
    assert answer_id(b'{"model_name":"m","id":"v2","outputs":[]}') == "v2"
    assert shadow_headers(headers, b"not json") == shadow_headers(headers, None) == [
        (b"content-type", b"application/json"), (MIRROR_HEADER, b"1")]
    assert answer_id(b"[1]") is None


# ------------------------------------------------------------------------------------------ builder
OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}, "spec": {"model": "bc"}}


def env_of(owner: dict, **kw) -> dict[str, dict]:
    deployment = build_serving_deployment(ServingInput(
        owner=owner, model="bc", version="bc-v7", role="shadow", replicas=1, artifact_uri="s3://mlops/models/bc/bc-v7",
        image="img", s3_secret="mlops-s3-readonly", **kw))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_given_logging_when_the_server_is_built_then_it_gets_the_settings_and_the_writers_secret():
    owner = {**OWNER, "spec": {**OWNER["spec"], "logging": {"sampleRate": 0.25, "flushInterval": "1m30s"}}}
    env = env_of(owner, log_s3_secret="mlops-s3")
    plain = {k: e["value"] for k, e in env.items() if "value" in e}
    assert plain["MLOPS_LOG_SAMPLE_RATE"] == "0.25" and plain["MLOPS_LOG_FLUSH_INTERVAL"] == "90"
    assert plain["MLOPS_LOG_BATCH_ROWS"] == "1000" and plain["MLOPS_LOG_MAX_BUFFER_ROWS"] == "10000"
    assert plain["MLOPS_LOG_NAMESPACE"] == "team-a" and plain["MLOPS_LOG_DEPLOYMENT"] == "bc"
    # the model is still read with the read-only Secret; the writer has its own names, from the read-write one
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-s3-readonly", "key": "AWS_ACCESS_KEY_ID"}
    assert env["MLOPS_LOG_AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["MLOPS_LOG_S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert {k for k in env if k.startswith("MLOPS_LOG_AWS") or k.startswith("MLOPS_LOG_S3")} == {
        "MLOPS_LOG_AWS_ACCESS_KEY_ID", "MLOPS_LOG_AWS_SECRET_ACCESS_KEY", "MLOPS_LOG_S3_ENDPOINT_URL", "MLOPS_LOG_S3_BUCKET"}
    assert all("value" not in env[k] for k in env if "AWS" in k)  # credentials only by reference


def test_given_no_writer_secret_when_built_then_the_operators_read_write_secret_is_used(monkeypatch):
    from mlops_operator.operator_settings import operator_settings
    monkeypatch.setenv("MLOPS_S3_SECRET", "team-rw")
    operator_settings.cache_clear()
    try:
        env = env_of({**OWNER, "spec": {**OWNER["spec"], "logging": {}}})
    finally:
        operator_settings.cache_clear()
    assert env["MLOPS_LOG_AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "team-rw"
    assert env["MLOPS_LOG_SAMPLE_RATE"]["value"] == "0.1"


@pytest.mark.parametrize("logging", [None, {"sampleRate": 0}])
def test_given_logging_off_when_built_then_no_log_env(logging):
    owner = {**OWNER, "spec": {**OWNER["spec"], **({"logging": logging} if logging is not None else {})}}
    assert not [k for k in env_of(owner) if k.startswith("MLOPS_LOG_")]
