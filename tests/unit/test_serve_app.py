"""The model server over HTTP (ASGI, in-process): predictions, kserve error mapping, health, metrics, fault hook.

The estimator is injected (`ModelRuntime`), so these run without S3; loading from MinIO is the
integration test's job.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_fault import parse_fault
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = pytest.mark.unit

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(X, Y)


def make_app(estimator=None, fault: str = "", max_body: int = 1 << 20, version: str = "v1") -> ServeApp:
    name = f"iris-{uuid.uuid4().hex[:8]}"  # module-level instruments: a fresh label set per test
    runtime = ModelRuntime(estimator) if estimator is not None else None
    model = SklearnModel(name, version, runtime=runtime, fault=parse_fault(fault))
    return ServeApp(model, ServeMetrics(name, version, "candidate"), max_body_bytes=max_body)


def client(app: ServeApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def count(app: ServeApp, code: int) -> float:
    name, version, role = app.metrics.labels
    value = REGISTRY.get_sample_value("mlops_requests_total", {"model": name, "version": version, "role": role, "code": str(code)})
    return value or 0.0


# ------------------------------------------------------------------------------------------ predictions
async def test_given_v1_instances_when_predicted_then_equal_to_in_process_predict(estimator):
    app = make_app(estimator)
    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": X[::10].tolist()})
    assert response.status_code == 200
    assert response.json() == {"predictions": estimator.predict(X[::10]).tolist(), "id": response.json()["id"]}
    assert count(app, 200) == 1


async def test_given_v2_tensor_when_inferred_then_equal_to_in_process_predict(estimator):
    app = make_app(estimator, version="iris-v3")
    rows = X[5:25]
    payload = {"id": "req-1", "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}
    async with client(app) as http:
        response = await http.post(f"/v2/models/{app.model.name}/infer", json=payload)
        versioned = await http.post(f"/v2/models/{app.model.name}/versions/iris-v3/infer", json=payload)
    assert response.status_code == 200 and versioned.status_code == 200
    doc = response.json()
    assert doc["id"] == "req-1" and doc["model_name"] == app.model.name and doc["model_version"] == "iris-v3"
    assert doc["outputs"] == [{"name": "output-0", "shape": [20], "datatype": "INT64", "data": estimator.predict(rows).tolist()}]


async def test_given_dataframe_fitted_column_transformer_when_predicted_then_same_as_dataframe_predict():
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    pipeline = make_pipeline(ColumnTransformer([("scale", StandardScaler(), ["pl", "pw", "sl"])]), LogisticRegression(max_iter=1000))
    pipeline.fit(frame, Y)
    app = make_app(pipeline)
    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": X[::7].tolist()})
        by_name = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [{"pw": 0.2, "pl": 1.4, "sl": 5.1, "sw": 3.5}]})
    assert response.json()["predictions"] == pipeline.predict(frame.iloc[::7]).tolist()
    assert by_name.json()["predictions"] == pipeline.predict(frame.iloc[[0]]).tolist()


async def test_given_nulls_when_model_imputes_then_predicted_else_400_not_500(estimator):
    imputing = make_app(make_pipeline(SimpleImputer(), LogisticRegression(max_iter=1000)).fit(X, Y))
    plain = make_app(estimator)
    body = {"instances": [[5.1, None, 1.4, 0.2]]}
    async with client(imputing) as a, client(plain) as b:
        ok = await a.post(f"/v1/models/{imputing.model.name}:predict", json=body)
        refused = await b.post(f"/v1/models/{plain.model.name}:predict", json=body)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
    assert refused.status_code == 400 and "cannot impute" in refused.json()["error"]


# ------------------------------------------------------------------------------------------ client errors
@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"{", 400, "Unrecognized request format"),
        (b'{"instances": [[1, 2]]}', 400, "the model expects 4"),
        (b'{"instances": [[1, 2, 3, "four"]]}', 400, "non-numeric"),
        (b'{"instances": [[1, 2, 3, 1e400]]}', 400, "Unrecognized request format"),
        (b'{"instances": [[1, 2, 3, 4], [1]]}', 400, "rectangular"),
        (b'{"instances": [[' + b"1," * 600_000 + b"1]]}", 413, "exceeds the limit"),
    ],
)
async def test_given_bad_v1_payload_when_posted_then_4xx_with_kserve_error_shape(estimator, content, status, message):
    app = make_app(estimator)
    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", content=content)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert count(app, status) == 1


async def test_given_chunked_body_over_limit_when_posted_then_413_without_reading_it_all(estimator):
    app = make_app(estimator, max_body=4096)
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(100):
            sent += 1024
            yield b" " * 1024

    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", content=chunks())
    assert response.status_code == 413


async def test_given_fuzzed_payloads_when_posted_then_never_a_5xx(estimator):
    app = make_app(estimator)
    rng = random.Random(7)
    atoms = [b"{", b"}", b"[", b"]", b",", b":", b'"instances"', b'"inputs"', b"null", b"1", b"-0.5", b"1e308",
             b'"x"', b"true", b'{"instances": [[1,2,3,4]]}', b'"shape"', b'"data"', b'"datatype"', b'"FP64"']
    paths = [f"/v1/models/{app.model.name}:predict", f"/v2/models/{app.model.name}/infer"]
    async with client(app) as http:
        for i in range(300):
            body = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 25)))
            response = await http.post(paths[i % 2], content=body)
            assert response.status_code < 500, (body, response.text)


async def test_given_other_model_name_or_unknown_path_when_requested_then_404_and_405_for_wrong_method(estimator):
    app = make_app(estimator)
    async with client(app) as http:
        other = await http.post("/v1/models/someone-else:predict", json={"instances": [[1, 2, 3, 4]]})
        unknown = await http.get("/nope")
        wrong_method = await http.get(f"/v1/models/{app.model.name}:predict")
    assert other.status_code == 404 and other.json() == {"error": "Model with name someone-else does not exist."}
    assert unknown.status_code == 404
    assert wrong_method.status_code == 405


# ------------------------------------------------------------------------------------------ health and readiness
async def test_given_model_not_loaded_when_probed_then_live_but_not_ready_and_predict_503():
    app = make_app(None)
    async with client(app) as http:
        live = await http.get("/v2/health/live")
        ready = await http.get("/v2/health/ready")
        model_ready = await http.get(f"/v2/models/{app.model.name}/ready")
        predict = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [[1, 2, 3, 4]]})
    assert live.status_code == 200 and live.json() == {"live": True}
    assert ready.status_code == 503 and ready.json()["error"].startswith("Server is not ready.")
    assert model_ready.status_code == 503
    assert predict.status_code == 503 and "is not ready" in predict.json()["error"]


async def test_given_loaded_model_when_metadata_requested_then_v2_shapes(estimator):
    app = make_app(estimator, version="v9")
    async with client(app) as http:
        server = (await http.get("/v2")).json()
        model = (await http.get(f"/v2/models/{app.model.name}")).json()
        listing = (await http.get("/v2/models")).json()
        ready = await http.get(f"/v2/models/{app.model.name}/ready")
    assert server["name"] == "mlops-serve" and "version" in server
    assert model["versions"] == ["v9"] and model["inputs"][0]["shape"] == [-1, 4]
    assert model["outputs"][0]["datatype"] == "INT64"
    assert listing == {"models": [app.model.name]}
    assert ready.json() == {"name": app.model.name, "ready": True}


# ------------------------------------------------------------------------------------------ fault hook
async def test_given_fault_error_when_predicted_then_500_from_the_model_not_the_client(estimator):
    app = make_app(estimator, fault="error")
    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [[1, 2, 3, 4]]})
        ready = await http.get("/v2/health/ready")
    assert response.status_code == 500 and "injected fault" in response.json()["error"]
    assert ready.status_code == 200  # a bad version still looks healthy: only analysis can catch it
    assert count(app, 500) == 1


async def test_given_fault_error_rate_when_predicted_then_exactly_that_share_fails(estimator):
    app = make_app(estimator, fault="error:0.25")
    async with client(app) as http:
        codes = [(await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [[1, 2, 3, 4]]})).status_code for _ in range(40)]
    assert codes.count(500) == 10 and codes[3] == 500 and codes[:3] == [200, 200, 200]


async def test_given_fault_slow_when_predicted_concurrently_then_each_delayed_but_not_serialised(estimator):
    app = make_app(estimator, fault="slow:0.2")
    async with client(app) as http:
        started = time.perf_counter()
        responses = await asyncio.gather(*[
            http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [[1, 2, 3, 4]]}) for _ in range(5)
        ])
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in responses)
    assert elapsed >= 0.2  # each was delayed; that the five delays overlap (< 1 s) is timed by `make bench`


@pytest.mark.parametrize("spec", ["explode", "slow", "slow:-1", "error:2", "error:x"])
def test_given_malformed_fault_spec_when_parsed_then_startup_fails_loudly(spec):
    with pytest.raises(ValueError, match="MLOPS_FAULT"):
        parse_fault(spec)


# ------------------------------------------------------------------------------------------ metrics
async def test_given_requests_when_metrics_scraped_then_counts_per_code_and_latency_histogram(estimator):
    app = make_app(estimator)
    name = app.model.name
    async with client(app) as http:
        for _ in range(3):
            await http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 2, 3, 4]]})
        await http.post(f"/v1/models/{name}:predict", content=b"[]")
        await http.get("/v2/health/ready")  # probes are not prediction traffic
        text = (await http.get("/metrics")).text
    labels = f'model="{name}",role="candidate",version="v1"'
    assert f'mlops_requests_total{{code="200",{labels}}} 3.0' in text
    assert f'mlops_requests_total{{code="400",{labels}}} 1.0' in text
    assert f"mlops_request_duration_seconds_count{{{labels}}} 4.0" in text
    assert np.isclose(REGISTRY.get_sample_value("mlops_request_duration_seconds_bucket",
                                                {"model": name, "version": "v1", "role": "candidate", "le": "10.0"}), 4)
