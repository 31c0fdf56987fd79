"""`mlops-serve` loading real artifacts from the local MinIO: verified load, equal predictions, fail closed.

The server is built exactly as `main()` builds it (`serve.build_app` from `ServeSettings`) and served on a
loopback port, so readiness comes from the real background loader reading through `ArtifactStore`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from mlops_operator.drift.reference import reference_stats
from mlops_operator.providers.storage import ArtifactStore, encode_manifest, sha256_hex
from mlops_operator.runtime.serve import ServeSettings, build_app
from mlops_operator.runtime.serve_asgi import LoopbackServer
from mlops_operator.runtime.train_artifacts import MODEL_FILE, REFERENCE_FILE, serialize_model, to_json
from mlops_operator.settings import S3Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = "bc-serve"


@pytest.fixture(scope="module")
def trained() -> tuple[RandomForestClassifier, pd.DataFrame]:
    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, target), frame


@pytest.fixture()
def store(s3_env) -> ArtifactStore:
    return ArtifactStore.from_settings(S3Settings())  # cluster_env has put the MinIO settings in os.environ


@pytest.fixture()
def prefix(s3_env, store: ArtifactStore) -> Iterator[str]:
    location = f"s3://{s3_env['S3_BUCKET']}/tests/serve/models/{MODEL}/{uuid.uuid4().hex[:10]}/"
    yield location
    loc = store.location(location)
    listed = store._client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key).get("Contents", [])
    if listed:
        store._client.delete_objects(Bucket=loc.bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})


def write_version(store: ArtifactStore, prefix: str, trained) -> dict:
    """The files as the trainer writes them (its own serializers), committed by the manifest."""
    estimator, frame = trained
    reference = reference_stats(frame, list(frame.columns), predictions=estimator.predict(frame), predictions_categorical=True)
    return store.write_version(prefix, {MODEL_FILE: serialize_model(estimator), REFERENCE_FILE: to_json(reference)})


def settings(prefix: str, **extra) -> ServeSettings:
    return ServeSettings(model=MODEL, model_version="bc-v1", role="candidate", artifact_prefix=prefix, **extra)


def scraped(text: str, name: str, **labels: str) -> float | None:
    """One sample of this server's series from a /metrics scrape."""
    wanted = {"model": MODEL, "version": "bc-v1", "role": "candidate", **labels}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return sample.value
    return None


async def wait_ready(client: httpx.AsyncClient, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await client.get("/v2/health/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_given_committed_version_when_served_then_ready_and_predictions_equal_in_process(store, prefix, trained):
    estimator, frame = trained
    manifest = write_version(store, prefix, trained)
    pin = sha256_hex(encode_manifest(manifest))  # the registry's status.artifact.sha256
    app = build_app(settings(prefix, artifact_sha256=pin, drift_interval=0.2, drift_min_rows=20), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await wait_ready(client, 30)).status_code == 200
        rows = frame.iloc[::25]
        v1 = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.to_numpy().tolist()})
        by_name = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.to_dict(orient="records")})
        v2 = await client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.to_numpy().ravel().tolist()}]})
        await asyncio.sleep(0.5)  # a few drift intervals over the 69 rows just served
        metrics = (await client.get("/metrics")).text
    expected = estimator.predict(rows).tolist()
    assert v1.json()["predictions"] == expected and v1.json()["id"] != by_name.json()["id"]
    assert by_name.json()["predictions"] == expected
    assert v2.json()["outputs"][0]["data"] == expected and v2.json()["model_version"] == "bc-v1"
    assert app.model.reference is not None and app.model.runtime.schema.names == list(frame.columns)
    assert scraped(metrics, "mlops_model_ready") == 1.0
    assert scraped(metrics, "mlops_feature_drift", feature="mean radius", test="psi") >= 0.0  # published, finite
    assert scraped(metrics, "mlops_feature_missing_ratio", feature="worst symmetry") == 0.0
    assert scraped(metrics, "mlops_prediction_drift", test="psi") >= 0.0


async def test_given_one_flipped_byte_in_the_artifact_when_served_then_never_ready(store, prefix, trained):
    write_version(store, prefix, trained)
    loc = store.object_uri(prefix, MODEL_FILE)
    blob = bytearray(store.read_object(str(loc)))
    blob[len(blob) // 2] ^= 0x01
    store.put_object(str(loc), bytes(blob))  # same size, different bytes: only the sha256 can tell
    app = build_app(settings(prefix), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        ready = await wait_ready(client, 2.5)  # the loader has failed and retried by now
        predict = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": [[0.0] * 30]})
        live = await client.get("/v2/health/live")
    assert ready.status_code == 503 and "sha256" in ready.json()["error"]
    assert predict.status_code == 503
    assert live.status_code == 200  # not Ready, but not crash-looping either
    assert app.model.runtime is None


async def test_given_registry_pin_not_matching_when_served_then_never_ready(store, prefix, trained):
    write_version(store, prefix, trained)
    app = build_app(settings(prefix, artifact_sha256="0" * 64), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        ready = await wait_ready(client, 2.5)
    assert ready.status_code == 503 and "registry's sha256" in ready.json()["error"]


async def test_given_upload_without_manifest_when_served_then_not_ready_until_committed(store, prefix, trained):
    estimator, _ = trained
    store.put_object(str(store.location(prefix).join(MODEL_FILE)), serialize_model(estimator))
    app = build_app(settings(prefix), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        waiting = await wait_ready(client, 1.5)
        write_version(store, prefix, trained)  # the interrupted upload is completed and committed
        ready = await wait_ready(client, 30)
    assert waiting.status_code == 503 and "manifest" in waiting.json()["error"]
    assert ready.status_code == 200


async def test_given_a_served_version_when_predictions_get_labels_then_accuracy_and_feedback_are_on_metrics(store, prefix, trained):
    estimator, frame = trained
    write_version(store, prefix, trained)
    _, target = load_breast_cancer(return_X_y=True, as_frame=True)
    app = build_app(settings(prefix, feedback_max_predictions=50, feedback_window=100), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await wait_ready(client, 30)).status_code == 200
        loaded = (await client.get("/metrics")).text  # the row counters exist from 0 once loaded
        rows = frame.iloc[:40]
        v1 = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.iloc[:20].to_numpy().tolist()})
        v2 = await client.post(f"/v2/models/{MODEL}/infer", json={"id": "batch-2", "inputs": [
            {"name": "input-0", "shape": [20, 30], "datatype": "FP64", "data": rows.iloc[20:].to_numpy().ravel().tolist()}]})
        predicted = v1.json()["predictions"] + v2.json()["outputs"][0]["data"]
        truth = target.iloc[:40].tolist()
        flipped = [1 - t for t in truth[20:]]  # the second batch labelled with the opposite class: all wrong
        right = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": v1.json()["id"], "labels": truth[:20]})
        wrong = await client.post(f"/v2/models/{MODEL}/feedback", json={"id": "batch-2", "labels": flipped})
        unknown = await client.post(f"/v2/models/{MODEL}/feedback", json={"id": "never-predicted", "labels": [1]})
        short = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": v1.json()["id"], "labels": [1]})
        metrics = (await client.get("/metrics")).text
    assert v2.json()["id"] == "batch-2"
    # The server's series are module-level (other tests here served the same labels): compare increases.
    def increase(name: str, **labels: str) -> float:
        return scraped(metrics, name, **labels) - (scraped(loaded, name, **labels) or 0.0)

    assert scraped(loaded, "mlops_feedback_rows_total") is not None  # exported from load on, before any label
    assert scraped(loaded, "mlops_feedback_correct_total") is not None
    assert right.status_code == 200 and wrong.status_code == 200, (right.text, wrong.text)
    expected_right = sum(p == t for p, t in zip(predicted[:20], truth[:20]))
    expected_wrong = sum(p == f for p, f in zip(predicted[20:], flipped))
    assert right.json()["correct"] == expected_right and wrong.json()["correct"] == expected_wrong
    assert unknown.status_code == 404 and short.status_code == 409  # labelled already, whatever its length
    assert scraped(metrics, "mlops_model_accuracy") == (expected_right + expected_wrong) / 40
    assert scraped(metrics, "mlops_feedback_window_rows") == 40.0
    assert increase("mlops_feedback_rows_total") == 40.0
    assert increase("mlops_feedback_correct_total") == expected_right + expected_wrong
    assert increase("mlops_feedback_total", result="ok") == 2.0
    assert increase("mlops_feedback_total", result="unknown_id") == 1.0
    assert increase("mlops_feedback_total", result="duplicate") == 1.0
    assert increase("mlops_requests_total", code="200") == 2.0  # feedback is not prediction traffic


def write_compiled_version(store: ArtifactStore, prefix: str, trained) -> dict:
    """A version as the trainer commits a compiled one: model.onnx beside model.joblib, metrics.json recording it."""
    from mlops_operator.runtime.train_compile import compile_model

    estimator, frame = trained
    compiled = compile_model(estimator, frame.iloc[::5])
    assert compiled.onnx is not None, compiled.report
    reference = reference_stats(frame, list(frame.columns), predictions=estimator.predict(frame), predictions_categorical=True)
    return store.write_version(prefix, {MODEL_FILE: serialize_model(estimator), REFERENCE_FILE: to_json(reference),
                                        "metrics.json": to_json({"compiled": compiled.report}), "model.onnx": compiled.onnx})


@pytest.mark.parametrize("setting, platform", [("auto", "onnxruntime"), ("off", "sklearn")])
async def test_given_a_compiled_version_when_served_then_the_setting_picks_the_form_and_answers_equal_sklearn(
        store, prefix, trained, setting, platform):
    estimator, frame = trained
    manifest = write_compiled_version(store, prefix, trained)
    app = build_app(settings(prefix, artifact_sha256=sha256_hex(encode_manifest(manifest)), compiled_model=setting,
                             cpu_limit=2), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await wait_ready(client, 30)).status_code == 200
        rows = frame.iloc[::3].to_numpy()
        v1 = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.tolist()})
        v2 = await client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]})
        meta = await client.get(f"/v2/models/{MODEL}")
    expected = estimator.predict(rows).tolist()
    assert v1.json()["predictions"] == expected and v2.json()["outputs"][0]["data"] == expected
    assert meta.json()["platform"] == platform
    if setting == "auto":
        assert app.model.runtime.compiled.threads == 2


async def test_given_one_flipped_byte_in_model_onnx_when_served_then_never_ready(store, prefix, trained):
    write_compiled_version(store, prefix, trained)
    loc = store.object_uri(prefix, "model.onnx")
    blob = bytearray(store.read_object(str(loc)))
    blob[len(blob) // 2] ^= 0x01
    store.put_object(str(loc), bytes(blob))
    app = build_app(settings(prefix), store)
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        ready = await wait_ready(client, 2.5)
    assert ready.status_code == 503 and "sha256" in ready.json()["error"]
    assert app.model.runtime is None
