"""The builtin provider: rates from the router's counters, read over real HTTP from local 'router pods'."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mlops_operator.logic.analysis import Check, agreement_check
from mlops_operator.providers.metrics import builtin, measure
from mlops_operator.providers.metrics.base import MetricsError, MetricsWarmingUp, Target
from mlops_operator.providers.metrics.builtin import BuiltinProvider, parse_metrics

pytestmark = pytest.mark.unit

CANDIDATE = Target("team-a", "bc", "breast-cancer", "v2", "candidate")
SHADOW = Target("team-a", "bc", "breast-cancer", "v3", "shadow")
WINDOW = timedelta(seconds=30)


class RouterPod:
    """A local HTTP server exposing router-shaped metrics from its own registry."""

    def __init__(self) -> None:
        self.fresh()
        pod = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = generate_latest(pod.registry)
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def fresh(self) -> None:
        """A new registry: what a restarted router pod exposes (counters from zero)."""
        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_router_requests", "", ("variant", "code"), registry=self.registry)
        self.duration = Histogram("mlops_router_request_duration_seconds", "", ("variant",), registry=self.registry,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 1.0))
        self.shadow = Counter("mlops_shadow_predictions", "", ("model", "version", "result"), registry=self.registry)

    def serve(self, variant: str, ok: int, errors: int = 0, seconds: float = 0.02) -> None:
        self.requests.labels(variant, "200").inc(ok)
        if errors:
            self.requests.labels(variant, "502").inc(errors)
        for _ in range(ok + errors):
            self.duration.labels(variant).observe(seconds)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def pods() -> Iterator[list[RouterPod]]:
    made = [RouterPod(), RouterPod()]
    yield made
    for pod in made:
        pod.close()


def provider(pods: list[RouterPod], clock: Clock, extra: list[str] = ()) -> BuiltinProvider:
    async def targets() -> list[str]:
        return [p.url for p in pods] + list(extra)
    return BuiltinProvider(targets, clock=clock, timeout=1.0)


async def test_given_one_reading_only_when_a_rate_is_asked_then_it_is_warming_up_not_no_data(pods):
    clock = Clock()
    p = provider(pods, clock)
    pods[0].serve("candidate", 100)
    with pytest.raises(MetricsWarmingUp):
        await p.run_query(p.builtin_query("errorRate", CANDIDATE, WINDOW))
    with pytest.raises(MetricsWarmingUp):  # measure() lets it through: the run is skipped, not judged
        await measure(p, [Check("e", builtin="errorRate", max=0.01)], CANDIDATE, WINDOW)


async def test_given_two_readings_a_window_apart_when_asked_then_rates_are_summed_over_pods(pods):
    clock = Clock()
    p = provider(pods, clock)
    pods[0].serve("candidate", 500)  # history before the window must not count
    assert await p.is_online()
    clock.t += 30
    pods[0].serve("candidate", 60, errors=4)
    pods[1].serve("candidate", 36, errors=0)
    pods[1].serve("stable", 900, errors=90)  # another variant
    assert await p.run_query(p.builtin_query("requests", CANDIDATE, WINDOW)) == 100
    assert await p.run_query(p.builtin_query("errorRate", CANDIDATE, WINDOW)) == pytest.approx(0.04)
    p99 = await p.run_query(p.builtin_query("latencyP99Seconds", CANDIDATE, WINDOW))
    assert 0.01 < p99 <= 0.05


async def test_given_a_router_pod_restart_when_counters_drop_then_it_counts_as_a_reset_not_negative(pods):
    clock = Clock()
    p = provider(pods, clock)
    pods[0].serve("candidate", 1000)
    await p.scrape()
    clock.t += 30
    pods[0].fresh()
    pods[0].serve("candidate", 40, errors=10)
    assert await p.run_query(p.builtin_query("requests", CANDIDATE, WINDOW)) == 50
    assert await p.run_query(p.builtin_query("errorRate", CANDIDATE, WINDOW)) == pytest.approx(0.2)


async def test_given_no_candidate_traffic_when_error_rate_is_asked_then_nan_means_no_data(pods):
    clock = Clock()
    p = provider(pods, clock)
    pods[0].serve("candidate", 1)
    await p.scrape()
    clock.t += 30
    assert math.isnan(await p.run_query(p.builtin_query("errorRate", CANDIDATE, WINDOW)))
    assert await p.run_query(p.builtin_query("requests", CANDIDATE, WINDOW)) == 0


async def test_given_shadow_comparisons_when_agreement_is_asked_then_it_is_the_cumulative_ratio(pods):
    p = provider(pods, Clock())
    pods[0].shadow.labels("breast-cancer", "v3", "agree").inc(90)
    pods[1].shadow.labels("breast-cancer", "v3", "agree").inc(5)
    pods[1].shadow.labels("breast-cancer", "v3", "disagree").inc(5)
    pods[1].shadow.labels("breast-cancer", "v9", "disagree").inc(50)  # another shadow version
    (result,) = await measure(p, [agreement_check(0.9)], SHADOW, WINDOW)
    assert (result.value, result.samples, result.error) == (pytest.approx(0.95), 100, None)


async def test_given_one_pod_down_when_scraping_then_the_others_still_answer_and_all_down_is_offline(pods):
    clock = Clock()
    dead = "http://127.0.0.1:9/metrics"
    p = provider(pods, clock, extra=[dead])
    assert await p.is_online()
    for pod in pods:
        pod.close()
    clock.t += 5
    assert await p.is_online() is False
    with pytest.raises(MetricsError, match="none of 3 router pods"):
        await p.run_query(p.builtin_query("requests", CANDIDATE, WINDOW))


async def test_given_no_router_pods_when_asked_then_offline():
    async def none() -> list[str]:
        return []
    assert await BuiltinProvider(none).is_online() is False


async def test_given_a_custom_promql_check_when_measured_then_it_is_an_error_not_a_guess(pods):
    clock = Clock()
    p = provider(pods, clock)
    await p.scrape()
    clock.t += 30
    (result,) = await measure(p, [Check("acc", query="avg(my_accuracy)", min=0.9)], CANDIDATE, WINDOW)
    assert result.value is None and "custom queries need Prometheus" in result.error


def test_given_the_real_router_metrics_when_parsed_then_the_provider_reads_its_series():
    from prometheus_client import REGISTRY

    from mlops_operator.runtime.route_metrics import RouterMetrics

    RouterMetrics().observe("candidate", 503, 0.01)
    series = parse_metrics(generate_latest(REGISTRY).decode())
    names = {name for name, _ in series}
    assert {builtin.REQUESTS_TOTAL, builtin.DURATION_BUCKET} <= names
    assert any(dict(labels).get("variant") == "candidate" and dict(labels).get("code") == "503"
               for name, labels in series if name == builtin.REQUESTS_TOTAL)


def test_given_the_same_deployment_when_asking_for_its_provider_then_history_is_kept_across_passes():
    async def targets() -> list[str]:
        return []
    first = builtin.provider_for("ns", "md", targets)
    assert builtin.provider_for("ns", "md", targets) is first
    assert builtin.provider_for("ns", "other", targets) is not first
    builtin.forget("ns", "md")
    assert builtin.provider_for("ns", "md", targets) is not first
