"""The router on real loopback sockets in front of real model servers: split, 502s, shadow isolation, agreement."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections import Counter

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror, agreement, predictions_of
from mlops_operator.runtime.route_upstream import UpstreamError, UpstreamPool
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_asgi import LoopbackServer
from mlops_operator.runtime.serve_fault import parse_fault
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

X, Y = load_iris(return_X_y=True)
MODEL = "iris"
PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(X, Y)


def server(estimator, version: str, fault: str = "") -> LoopbackServer:
    model = SklearnModel(MODEL, version, runtime=ModelRuntime(estimator), fault=parse_fault(fault))
    return LoopbackServer(ServeApp(model, ServeMetrics(MODEL, version, "test")))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def router(doc: dict, timeout: float = 5.0, **mirror_options):
    metrics = RouterMetrics()
    state = RouterState(metrics)
    state.offer(doc, "test")
    app = RouterApp(state, ShadowMirror(metrics.observe, **mirror_options), metrics, timeout=timeout)
    async with LoopbackServer(app) as running, httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        yield app, client


def doc(stable: str, candidate: str | None = None, weight: float = 0, shadow: str | None = None, percent: float = 100) -> dict:
    out: dict = {"generation": 1, "model": MODEL, "stable": {"url": stable, "version": "v1"}}
    if candidate:
        out["candidate"] = {"url": candidate, "version": "v2", "weight": weight}
    if shadow:
        out["shadow"] = {"url": shadow, "version": f"s-{uuid.uuid4().hex[:6]}", "percent": percent}
    return out


def router_count(variant: str, code: int) -> float:
    return REGISTRY.get_sample_value("mlops_router_requests_total", {"variant": variant, "code": str(code)}) or 0.0


def shadow_count(app: RouterApp, metric: str, **labels: str) -> float:
    shadow = app.state.route.config.shadow
    return REGISTRY.get_sample_value(metric, {"model": MODEL, "version": shadow.version, **labels}) or 0.0


# ------------------------------------------------------------------------------------------ split
async def test_given_ten_percent_canary_when_routed_then_exact_split_and_identical_answers(estimator):
    async with server(estimator, "v1") as stable, server(estimator, "v2") as candidate:
        async with router(doc(stable.url, candidate.url, weight=10)) as (_, client):
            seen = Counter()
            for i in range(200):
                response = await client.post(PREDICT, json={"instances": X[i % 150: i % 150 + 1].tolist()})
                assert response.status_code == 200
                assert response.json()["predictions"] == estimator.predict(X[i % 150: i % 150 + 1]).tolist()
                seen[(response.headers["x-mlops-variant"], response.headers["x-mlops-version"])] += 1
    assert seen == {("stable", "v1"): 180, ("candidate", "v2"): 20}


async def test_given_unreachable_candidate_when_routed_then_only_its_requests_get_502(estimator):
    before = router_count("candidate", 502)
    async with server(estimator, "v1") as stable:
        async with router(doc(stable.url, f"http://127.0.0.1:{closed_port()}", weight=50)) as (_, client):
            codes = Counter()
            for _ in range(20):
                response = await client.post(PREDICT, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                codes[(response.headers["x-mlops-variant"], response.status_code)] += 1
                if response.status_code == 502:
                    assert "upstream candidate failed" in response.json()["error"]
    assert codes == {("stable", 200): 10, ("candidate", 502): 10}
    assert router_count("candidate", 502) - before == 10


async def test_given_slow_upstream_when_timeout_passes_then_502_and_the_router_keeps_serving(estimator):
    async with server(estimator, "v1", fault="slow:0.6") as stable:
        async with router(doc(stable.url), timeout=0.2) as (_, client):  # how soon: `make bench` (latency)
            response = await client.post(PREDICT, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
            assert response.status_code == 502 and "no response within 0.2s" in response.json()["error"]
            assert (await client.get("/-/ready")).status_code == 200


async def test_given_upstream_http_error_when_routed_then_passed_through_not_rewritten(estimator):
    async with server(estimator, "v1", fault="error") as stable:
        async with router(doc(stable.url)) as (_, client):
            response = await client.post(PREDICT, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
            bad = await client.post(PREDICT, content=b"{")
    assert response.status_code == 500 and "injected fault" in response.json()["error"]
    assert bad.status_code == 400


# ------------------------------------------------------------------------------------------ shadow
async def test_given_slow_shadow_when_mirroring_everything_then_primary_is_never_delayed(estimator):
    delay = 1.0
    async with server(estimator, "v1") as stable, server(estimator, "v3", fault=f"slow:{delay}") as shadow:
        async with router(doc(stable.url, shadow=shadow.url), max_queue=2, concurrency=2) as (app, client):
            for i in range(20):
                response = await client.post(PREDICT, json={"instances": X[i:i + 1].tolist()})
                assert response.status_code == 200
            # Every request was mirrored to a shadow taking 1 s each, 2 at a time; that the primary waited for
            # none of them is timed by `make bench` (latency).
            await asyncio.wait_for(app.mirror.join(), timeout=10)
            dropped = shadow_count(app, "mlops_shadow_requests_total", outcome="dropped")
            answered = shadow_count(app, "mlops_shadow_requests_total", outcome="ok")
            assert dropped > 0 and answered + dropped == 20  # the bounded queue shed load instead of growing


async def test_given_failing_or_unreachable_shadow_when_mirroring_then_primary_answers_are_unaffected(estimator):
    async with server(estimator, "v1") as stable, server(estimator, "v3", fault="error") as failing:
        for shadow_url in (failing.url, f"http://127.0.0.1:{closed_port()}"):
            async with router(doc(stable.url, shadow=shadow_url)) as (app, client):
                codes = [(await client.post(PREDICT, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})).status_code for _ in range(10)]
                await asyncio.wait_for(app.mirror.join(), timeout=10)
                assert codes == [200] * 10
                assert shadow_count(app, "mlops_shadow_requests_total", outcome="error") == 10
                assert shadow_count(app, "mlops_shadow_agreement_ratio") == 0.0  # nothing compared, nothing claimed


async def test_given_shadow_with_other_model_when_mirrored_then_agreement_counts_matching_rows(estimator):
    constant = DummyClassifier(strategy="constant", constant=0).fit(X, Y)
    rows = X[::3]  # 50 rows, a third of them class 0
    expected = int(np.sum(estimator.predict(rows) == 0))
    async with server(estimator, "v1") as stable, server(constant, "v3") as shadow:
        async with router(doc(stable.url, shadow=shadow.url, percent=50)) as (app, client):
            for i in range(0, 50, 5):  # 10 requests of 5 rows: exactly every second one mirrored
                await client.post(PREDICT, json={"instances": rows[i:i + 5].tolist()})
            await asyncio.wait_for(app.mirror.join(), timeout=10)
            agreed = shadow_count(app, "mlops_shadow_predictions_total", result="agree")
            disagreed = shadow_count(app, "mlops_shadow_predictions_total", result="disagree")
            ratio = shadow_count(app, "mlops_shadow_agreement_ratio")
    mirrored = np.concatenate([estimator.predict(rows[i:i + 5]) for i in range(5, 50, 10)])  # requests 2, 4, ... 10
    assert agreed + disagreed == 25
    assert agreed == int(np.sum(mirrored == 0)) and 0 < agreed < 25 and expected > 0
    assert ratio == pytest.approx(agreed / 25)


def test_given_v1_and_v2_bodies_when_predictions_extracted_then_compared_row_by_row():
    assert predictions_of(b'{"predictions": [1, 0]}') == [1, 0]
    assert predictions_of(b'{"outputs": [{"name": "output-0", "data": [1, 0]}]}') == [1, 0]
    assert predictions_of(b'{"live": true}') is None and predictions_of(b"<html>") is None
    assert agreement([1, 0, 2], [1, 1, 2]) == (2, 3)
    assert agreement([0.5, [0.1, 0.9]], [0.5 + 1e-12, [0.1, 0.9]]) == (2, 2)
    assert agreement([1, 2], [1]) == (0, 2)  # a different number of answers agrees on nothing


# ------------------------------------------------------------------------------------------ upstream client
async def test_given_server_that_drops_idle_keepalive_connections_when_reused_then_request_retried_once():
    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # keep-alive implied, then closed anyway
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    pool = UpstreamPool("127.0.0.1", port)
    try:
        first = await pool.request("GET", "/", [], b"", timeout=2)
        await asyncio.sleep(0.05)  # the server has closed the pooled connection by now
        second = await pool.request("GET", "/", [], b"", timeout=2)
    finally:
        pool.close()
        listener.close()
    assert (first.status, first.body, second.status, second.body) == (200, b"ok", 200, b"ok")


async def test_given_upstream_answering_garbage_when_requested_then_upstream_error():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    listener = await asyncio.start_server(garbage, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", listener.sockets[0].getsockname()[1])
    try:
        with pytest.raises(UpstreamError, match="malformed response"):
            await pool.request("GET", "/", [], b"", timeout=2)
    finally:
        pool.close()
        listener.close()
