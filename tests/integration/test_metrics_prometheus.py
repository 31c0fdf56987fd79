"""The Prometheus provider against the real local Prometheus, scraping a real exporter of server metrics.

A local HTTP server exposes ``mlops_requests_total`` / ``mlops_request_duration_seconds`` /
``mlops_shadow_predictions_total`` (the serving contract) and is registered with Prometheus through the
local file_sd directory, labelled with a namespace unique to this run. The builtin queries then have to
find exactly this run's series, compute the error rate, p99 and agreement, and report "no data" for a
version without traffic — the answers the rollout analysis depends on.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import pathlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from mlops_operator.logic import analysis
from mlops_operator.logic.analysis import Check, Outcome, agreement_check
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricsError, Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from mlops_operator.runtime.serve_metrics import LATENCY_BUCKETS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODEL = "breast-cancer"
WINDOW = timedelta(seconds=60)


class Exporter:
    """Model-server-shaped metrics on a local port, from a registry the test drives."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_requests", "", ("model", "version", "role", "code"), registry=self.registry)
        self.duration = Histogram("mlops_request_duration_seconds", "", ("model", "version", "role"),
                                  registry=self.registry, buckets=LATENCY_BUCKETS)
        self.shadow = Counter("mlops_shadow_predictions", "", ("model", "version", "result"), registry=self.registry)
        # prometheus-client's own exposition server, the same text format the model server's /metrics serves.
        self.server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def prometheus_url(cluster_env: dict[str, str]) -> str:
    return cluster_env["PROMETHEUS_URL"]


@pytest.fixture(scope="module")
def scraped(cluster_env: dict[str, str]) -> Iterator[tuple[Exporter, str]]:
    """An exporter Prometheus scrapes, labelled namespace=<unique>; removed from file_sd afterwards."""
    exporter = Exporter()
    namespace = f"itest-{uuid.uuid4().hex[:8]}"
    targets = pathlib.Path(cluster_env["PROMETHEUS_TARGETS_DIR"]) / f"mlops-metrics-{namespace}.json"
    tmp = targets.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [exporter.address], "labels": {"namespace": namespace}}]))
    os.replace(tmp, targets)  # atomically: Prometheus must never read half a file
    yield exporter, namespace
    targets.unlink(missing_ok=True)
    exporter.server.shutdown()
    exporter.server.server_close()


async def _wait_for(provider: PrometheusProvider, query: str, ok, timeout: float = 90) -> float | None:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await provider.run_query(query)
        if ok(value):
            return value
        await asyncio.sleep(1)
    raise AssertionError(f"{query!r} never satisfied the condition; last value {value!r}")


async def test_given_real_prometheus_when_metrics_flow_then_builtin_checks_measure_the_candidate(prometheus_url, scraped):
    exporter, namespace = scraped
    provider = PrometheusProvider(prometheus_url)
    assert await provider.is_online()
    v2 = Target(namespace, "bc", MODEL, "v2", "candidate")
    idle = Target(namespace, "bc", MODEL, "v3", "candidate")
    for version, code in (("v2", "200"), ("v2", "500"), ("v3", "200")):
        exporter.requests.labels(MODEL, version, "candidate", code)
    exporter.duration.labels(MODEL, "v2", "candidate")
    exporter.duration.labels(MODEL, "v3", "candidate")
    await _wait_for(provider, f'sum(up{{namespace="{namespace}"}})', lambda v: v == 1.0)
    # One more scrape with everything at zero (the increase starts from there): wait for the next scrape.
    scraped_at = await provider.run_query(f'max(timestamp(up{{namespace="{namespace}"}}))')
    await _wait_for(provider, f'max(timestamp(up{{namespace="{namespace}"}}))', lambda v: v and v > scraped_at)

    exporter.requests.labels(MODEL, "v2", "candidate", "200").inc(900)
    exporter.requests.labels(MODEL, "v2", "candidate", "500").inc(100)
    for _ in range(1000):
        exporter.duration.labels(MODEL, "v2", "candidate").observe(0.04)
    exporter.shadow.labels(MODEL, "v2", "agree").inc(95)
    exporter.shadow.labels(MODEL, "v2", "disagree").inc(5)

    requests_query = provider.builtin_query("requests", v2, WINDOW)
    await _wait_for(provider, requests_query, lambda v: v is not None and v > 0)

    error_rate = await provider.run_query(provider.builtin_query("errorRate", v2, WINDOW))
    assert error_rate == pytest.approx(0.1, abs=0.005)
    p99 = await provider.run_query(provider.builtin_query("latencyP99Seconds", v2, WINDOW))
    assert 0.025 < p99 <= 0.05  # inside the bucket all observations fell into
    assert await provider.run_query(provider.builtin_query("agreement", v2, WINDOW)) == pytest.approx(0.95)
    assert await provider.run_query(provider.builtin_query("comparisons", v2, WINDOW)) == 100

    # a version whose series exist but that got no traffic: 0/0 is NaN, never a pass
    assert math.isnan(await provider.run_query(provider.builtin_query("errorRate", idle, WINDOW)))
    assert await provider.run_query(provider.builtin_query("requests", idle, WINDOW)) == 0
    # a version with no series at all: empty, i.e. no data
    ghost = Target(namespace, "bc", MODEL, "ghost", "candidate")
    assert await provider.run_query(provider.builtin_query("errorRate", ghost, WINDOW)) is None

    checks = [Check("error-rate", builtin="errorRate", max=0.01), Check("latency", builtin="latencyP99Seconds", max=0.25),
              agreement_check(0.9)]
    verdict = analysis.evaluate(checks, await measure(provider, checks, v2, WINDOW), min_samples=50)
    assert [c.outcome for c in verdict.checks] == [Outcome.FAILED, Outcome.PASSED, Outcome.PASSED]
    idle_verdict = analysis.evaluate(checks[:2], await measure(provider, checks[:2], idle, WINDOW), min_samples=50)
    assert idle_verdict.outcome is Outcome.NO_DATA


async def test_given_real_prometheus_when_a_query_is_bad_or_ambiguous_then_metrics_error(prometheus_url, scraped):
    provider = PrometheusProvider(prometheus_url)
    with pytest.raises(MetricsError, match="bad_data"):
        await provider.run_query("sum(rate(")
    with pytest.raises(MetricsError, match="series"):
        await provider.run_query('label_replace(vector(1), "a", "1", "", "") or label_replace(vector(2), "a", "2", "", "")')
    assert await provider.run_query("vector(2) / vector(0)") == math.inf


async def test_given_prometheus_unreachable_when_checked_then_offline_and_measurements_carry_errors(cluster_env):
    url = cluster_env["PROMETHEUS_URL"].rsplit(":", 1)[0] + ":1"  # same host, nothing listening
    provider = PrometheusProvider(url, timeout=2.0)
    assert await provider.is_online() is False
    results = await measure(provider, [Check("error-rate", builtin="errorRate", max=0.01)],
                            Target("ns", "bc", MODEL, "v2", "candidate"), WINDOW)
    verdict = analysis.evaluate([Check("error-rate", builtin="errorRate", max=0.01)], results, 50)
    assert verdict.outcome is Outcome.ERROR and verdict.counts_as_failure("hold", carries_traffic=True)
