"""The Prometheus provider against a local HTTP server speaking the Prometheus query API.

The server is real HTTP on 127.0.0.1 (no client-side mocking): the provider's requests, timeouts and
parsing are exercised end to end; only the answers are chosen by the test.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse

import pytest

from mlops_operator.logic.analysis import Check, agreement_check
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricsError, Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider

pytestmark = pytest.mark.unit

TARGET = Target("team-a", "bc", "breast-cancer", "v2", "candidate")
Answer = Callable[[str], tuple[int, object]]


def vector(*values: str) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [1700000000.0, v]} for v in values]}}


class FakePrometheus:
    """Answers /api/v1/query with ``answer(query)``; records every query it received."""

    def __init__(self) -> None:
        self.answer: Answer = lambda q: (200, vector("1"))
        self.queries: list[str] = []
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                if url.path != "/api/v1/query":
                    self.send_response(404)
                    self.end_headers()
                    return
                query = parse_qs(url.query)["query"][0]
                outer.queries.append(query)
                time.sleep(outer.delay)
                status, body = outer.answer(query)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def prom() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("body, expected", [
    (vector("0.25"), 0.25),
    (vector("+Inf"), math.inf),
    ({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "3"]}}, 3.0),
    (vector(), None),
])
async def test_given_a_single_value_or_empty_result_when_queried_then_the_number_or_no_data(prom, body, expected):
    prom.answer = lambda q: (200, body)
    assert await PrometheusProvider(prom.url).run_query("up") == expected


async def test_given_nan_when_queried_then_nan_is_returned_for_the_analysis_to_refuse(prom):
    prom.answer = lambda q: (200, vector("NaN"))
    assert math.isnan(await PrometheusProvider(prom.url).run_query("x"))


@pytest.mark.parametrize("status, body, message", [
    (200, vector("1", "2"), "2 series"),
    (400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}, "parse error"),
    (503, {"status": "error", "errorType": "unavailable", "error": "overloaded"}, "HTTP 503"),
    (500, b"<html>proxy error</html>", "not a Prometheus API response"),
    (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
    (200, {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}}, "malformed"),
])
async def test_given_an_unusable_answer_when_queried_then_metrics_error_says_why(prom, status, body, message):
    prom.answer = lambda q: (status, body)
    with pytest.raises(MetricsError, match=message):
        await PrometheusProvider(prom.url).run_query("x")


async def test_given_prometheus_unreachable_when_queried_then_metrics_error_and_offline():
    provider = PrometheusProvider(closed_port_url(), timeout=1.0)
    with pytest.raises(MetricsError, match="cannot reach"):
        await provider.run_query("up")
    assert await provider.is_online() is False


async def test_given_a_hung_prometheus_when_queried_then_the_timeout_bounds_the_wait(prom):
    prom.delay = 1.5  # it would answer "1" after the delay: an error proves the client gave up first
    with pytest.raises(MetricsError):  # how long it waits: `make bench` (latency)
        await PrometheusProvider(prom.url, timeout=0.3).run_query("up")


async def test_given_a_healthy_prometheus_when_checked_then_online_via_a_real_query(prom):
    assert await PrometheusProvider(prom.url).is_online() is True
    assert prom.queries == ["vector(1)"]
    prom.answer = lambda q: (200, vector())
    assert await PrometheusProvider(prom.url).is_online() is False


async def test_given_checks_when_measured_then_builtin_and_custom_queries_carry_the_sample_count(prom):
    answers = {"increase(mlops_requests_total": "480", "code=~": "0.002", "histogram_quantile(0.99": "0.08",
               "my_accuracy": "0.93"}
    prom.answer = lambda q: (200, vector(next(v for k, v in answers.items() if k in q)))
    checks = [Check("error-rate", builtin="errorRate", max=0.01), Check("latency", builtin="latencyP99Seconds", max=0.25),
              Check("acc", query='my_accuracy{model="{{model}}",version="{{version}}",namespace="{{namespace}}"}', min=0.9)]
    results = await measure(PrometheusProvider(prom.url), checks, TARGET, timedelta(seconds=30))
    assert [(r.name, r.value, r.samples, r.error) for r in results] == [
        ("error-rate", 0.002, 480, None), ("latency", 0.08, 480, None), ("acc", 0.93, 480, None)]
    assert 'my_accuracy{model="breast-cancer",version="v2",namespace="team-a"}' in prom.queries
    assert all('[30s]' in q for q in prom.queries if "rate(" in q or "increase(" in q)


async def test_given_agreement_check_when_measured_then_comparisons_are_its_samples(prom):
    prom.answer = lambda q: (200, vector("0.97" if "result=\"agree\"" in q else "250"))
    (result,) = await measure(PrometheusProvider(prom.url), [agreement_check(0.95)], TARGET, timedelta(seconds=30))
    assert (result.value, result.samples, result.error) == (0.97, 250, None)


async def test_given_prometheus_down_when_measured_then_every_result_carries_the_error():
    checks = [Check("error-rate", builtin="errorRate", max=0.01), agreement_check(0.9)]
    results = await measure(PrometheusProvider(closed_port_url(), timeout=1.0), checks, TARGET, timedelta(seconds=30))
    assert all(r.value is None and r.error and "prometheus: cannot reach" in r.error for r in results)


async def test_given_a_short_interval_when_measured_then_the_window_is_at_least_ten_seconds(prom):
    await measure(PrometheusProvider(prom.url), [Check("e", builtin="errorRate", max=1)], TARGET, timedelta(seconds=2))
    assert all("[10s]" in q for q in prom.queries)


def test_given_a_target_when_builtin_queries_are_written_then_they_select_namespace_model_and_version():
    provider = PrometheusProvider("http://prom:9090", namespace_label="kubernetes_namespace")
    query = provider.builtin_query("errorRate", TARGET, timedelta(minutes=1))
    assert query == ('(sum(rate(mlops_requests_total{kubernetes_namespace="team-a",model="breast-cancer",'
                     'version="v2",code=~"5.."}[60s])) or vector(0)) / sum(rate(mlops_requests_total'
                     '{kubernetes_namespace="team-a",model="breast-cancer",version="v2"}[60s]))')
    tricky = Target('n"s', "bc", "m", 'v\\"1', "candidate")
    assert 'version="v\\\\\\"1"' in provider.builtin_query("requests", tricky, timedelta(seconds=30))
    with pytest.raises(MetricsError):
        provider.builtin_query("nope", TARGET, timedelta(seconds=30))
