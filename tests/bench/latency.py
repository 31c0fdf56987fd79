"""`latency`: the wall-clock bounds the unit tests used to assert, timed here instead.

The unit tests keep the functional half of each claim (the timeout fires, the change is picked up, the
primary answers while the shadow is slow, the faults overlap); on a shared 2-core machine a wall-clock
bound is a measurement, not a verdict, so it lives in `make bench` with a median of repeats. Each case
builds exactly what its unit test builds, with that test's own helpers, and quotes the old bound as an
informational bar.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable

from sklearn.linear_model import LogisticRegression

from tests.bench.common import bar_line, table, write_results
from tests.unit import test_metrics_provider_prometheus as prom_kit
from tests.unit import test_route_config as config_kit
from tests.unit import test_route_proxy as proxy_kit
from tests.unit import test_serve_app as serve_kit

from mlops_operator.api import crdgen
from mlops_operator.providers.metrics.base import MetricsError
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from mlops_operator.runtime.route import RouteSettings, build_app
from mlops_operator.runtime.serve_asgi import LoopbackServer

ESTIMATOR = LogisticRegression(max_iter=1000).fit(proxy_kit.X, proxy_kit.Y)
ONE_ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


async def crd_render() -> float:
    """Seconds to render every CRD from the pydantic models (unit: test_crdgen)."""
    started = time.perf_counter()
    for kind in crdgen.KINDS:
        crdgen.render(kind)
    return time.perf_counter() - started


async def hung_prometheus() -> float:
    """Seconds until a query to a Prometheus that answers after 1.5 s gives up with timeout=0.3."""
    fake = prom_kit.FakePrometheus()
    fake.delay = 1.5
    fake.server.handle_error = lambda request, address: None  # its late answer meets a closed socket: expected
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        try:
            await PrometheusProvider(fake.url, timeout=0.3).run_query("up")
        except MetricsError:
            return time.perf_counter() - started
        raise AssertionError("the hung Prometheus answered before the timeout")
    finally:
        fake.server.shutdown()
        fake.server.server_close()


async def config_pickup() -> float:
    """Seconds from a ConfigMap-style file swap to the router serving the new generation (poll 0.25 s)."""
    with tempfile.TemporaryDirectory() as tmp:
        volume = config_kit.ConfigMapDir(Path(tmp))
        volume.write(config_kit.config(1, weight=10))
        app = build_app(RouteSettings(router_config=str(volume.path), router_poll=0.25))
        async with LoopbackServer(app) as server, config_kit.httpx.AsyncClient(base_url=server.url) as client:
            volume.write(config_kit.config(2, weight=50))
            started = time.perf_counter()
            await asyncio.wait_for(config_kit.generation(client, 2), timeout=10)
            return time.perf_counter() - started


async def slow_upstream_502() -> float:
    """Seconds until the router answers 502 for an upstream taking 0.6 s, with its timeout at 0.2 s."""
    async with proxy_kit.server(ESTIMATOR, "v1", fault="slow:0.6") as stable:
        async with proxy_kit.router(proxy_kit.doc(stable.url), timeout=0.2) as (_, client):
            started = time.perf_counter()
            response = await client.post(proxy_kit.PREDICT, json=ONE_ROW)
            elapsed = time.perf_counter() - started
    assert response.status_code == 502, response.text
    return elapsed


async def primary_beside_slow_shadow() -> float:
    """The slowest of 20 primary answers while every request is mirrored to a shadow taking 1 s."""
    async with proxy_kit.server(ESTIMATOR, "v1") as stable, \
            proxy_kit.server(ESTIMATOR, "v3", fault="slow:1.0") as shadow:
        async with proxy_kit.router(proxy_kit.doc(stable.url, shadow=shadow.url), max_queue=2, concurrency=2) \
                as (app, client):
            latencies = []
            for i in range(20):
                started = time.perf_counter()
                response = await client.post(proxy_kit.PREDICT, json={"instances": proxy_kit.X[i:i + 1].tolist()})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            await asyncio.wait_for(app.mirror.join(), timeout=10)
    return max(latencies)


async def overlapping_faults() -> float:
    """Seconds for five concurrent predictions against a server whose fault delays each by 0.2 s."""
    app = serve_kit.make_app(ESTIMATOR, fault="slow:0.2")
    async with serve_kit.client(app) as http:
        started = time.perf_counter()
        responses = await asyncio.gather(*[
            http.post(f"/v1/models/{app.model.name}:predict", json={"instances": [[1, 2, 3, 4]]}) for _ in range(5)
        ])
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in responses)
    return elapsed


# (name, measurement, the bound the unit test asserted until it moved here, in seconds)
CASES: list[tuple[str, Callable[[], Awaitable[float]], float]] = [
    ("render all CRDs", crd_render, 5.0),
    ("hung Prometheus, timeout 0.3 s", hung_prometheus, 1.4),
    ("router config file pickup", config_pickup, 0.5),
    ("502 for a 0.6 s upstream, timeout 0.2 s", slow_upstream_502, 1.5),
    ("slowest primary beside a 1 s shadow", primary_beside_slow_shadow, 0.5),
    ("five concurrent 0.2 s faults", overlapping_faults, 0.8),
]


def run(repeats: int = 3) -> None:
    rows, results = [], {}
    for name, measure, bound in CASES:
        times = [asyncio.run(measure()) for _ in range(max(repeats, 1))]
        median = statistics.median(times)
        rows.append((name, median, min(times), max(times), bound))
        results[name] = {"median_s": median, "times_s": times, "bound_s": bound}
    print(table(["case", "median s", "min s", "max s", "bound s"], rows))
    print("\nbars (informational; the bounds the unit tests asserted before they moved here):")
    for name, median, *_, bound in rows:
        print(bar_line(f"{name} < {bound:g} s", median < bound))
    path = write_results("latency", {"repeats": repeats, "cases": results})
    print(f"\nresults: {path}")
