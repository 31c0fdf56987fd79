"""Prometheus as a metric provider: instant queries over the HTTP API (``GET /api/v1/query``).

What counts as an answer: a scalar, or a vector of exactly one sample; ``NaN`` and ``+Inf`` come back as
the floats they are (the analysis refuses to pass them). An empty vector is *no data* (``None``). More
than one series is refused with a message asking to aggregate, rather than silently taking the first.
Unreachable, timing out, a non-2xx answer or ``status: error`` raise ``MetricsError``.

The builtin checks read the model server's own metrics (names and labels: the contract in docs/architecture.md)
by namespace, model and version, so they measure one version wherever its traffic comes from (canary
split, shadow mirror, blue/green preview). A ratio whose numerator series does not exist yet (no 5xx
ever) is ``or vector(0)``: "no errors" is a zero, only "no requests" is no data. ``accuracy`` is computed
from the feedback counters over the window (``increase(correct) / increase(rows)``), so it weighs every
replica by its labelled rows; a classifier's server exports its correct-rows counter from 0 at load, so a
regression model (no such counter) gives no data instead of an accuracy of 0. ``mae`` is its regression
twin, ``increase(absolute_error) / increase(rows)``: a classifier has no absolute-error counter, so no data.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from mlops_operator.providers.metrics.base import (
    ACCURACY,
    AGREEMENT,
    COMPARISONS,
    ERROR_RATE,
    LABELLED,
    MAE,
    QUANTILES,
    REQUESTS,
    MetricsError,
    Target,
)

DEFAULT_TIMEOUT = 5.0


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(window: timedelta) -> str:
    return f"{max(1, int(window.total_seconds()))}s"


class PrometheusProvider:
    """Queries one Prometheus server. ``namespace_label`` is the label your scrape config puts the pod's
    namespace in (``namespace`` with the usual Kubernetes relabelling)."""

    name = "prometheus"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, namespace_label: str = "namespace",
                 headers: dict[str, str] | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.url = url.rstrip("/")
        self.namespace_label = namespace_label
        self._timeout = timeout
        self._headers = headers or {}
        self._transport = transport

    # ---------------------------------------------------------------------------------- queries
    def _selector(self, target: Target, *extra: str) -> str:
        labels = {self.namespace_label: target.namespace, "model": target.model, "version": target.version}
        return "{" + ",".join([*(f"{k}={_quote(v)}" for k, v in labels.items()), *extra]) + "}"

    def builtin_query(self, metric: str, target: Target, window: timedelta) -> str:
        w, sel = _seconds(window), self._selector(target)
        if metric == REQUESTS:
            return f"sum(increase(mlops_requests_total{sel}[{w}]))"
        if metric == ERROR_RATE:
            errors = self._selector(target, 'code=~"5.."')
            return (f"(sum(rate(mlops_requests_total{errors}[{w}])) or vector(0))"
                    f" / sum(rate(mlops_requests_total{sel}[{w}]))")
        if metric in QUANTILES:
            return (f"histogram_quantile({QUANTILES[metric]}, "
                    f"sum by (le) (rate(mlops_request_duration_seconds_bucket{sel}[{w}])))")
        if metric == AGREEMENT:
            agree = self._selector(target, 'result="agree"')
            return f"(sum(mlops_shadow_predictions_total{agree}) or vector(0)) / sum(mlops_shadow_predictions_total{sel})"
        if metric == COMPARISONS:
            return f"sum(mlops_shadow_predictions_total{sel})"
        if metric == ACCURACY:
            return (f"sum(increase(mlops_feedback_correct_total{sel}[{w}]))"
                    f" / sum(increase(mlops_feedback_rows_total{sel}[{w}]))")
        if metric == MAE:
            return (f"sum(increase(mlops_feedback_absolute_error_total{sel}[{w}]))"
                    f" / sum(increase(mlops_feedback_rows_total{sel}[{w}]))")
        if metric == LABELLED:
            return f"sum(increase(mlops_feedback_rows_total{sel}[{w}]))"
        raise MetricsError(f"unknown builtin metric {metric!r}")

    async def run_query(self, query: str) -> float | None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers, transport=self._transport) as client:
                response = await client.get(f"{self.url}/api/v1/query", params={"query": query})
        except httpx.HTTPError as exc:
            raise MetricsError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
        return parse_response(response.status_code, response.content)

    async def is_online(self) -> bool:
        try:
            return await self.run_query("vector(1)") == 1.0
        except MetricsError:
            return False


def parse_response(status_code: int, content: bytes) -> float | None:
    """The single value of a query response (the rules in the module docstring)."""
    try:
        body: Any = httpx.Response(status_code, content=content).json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise MetricsError(f"HTTP {status_code}: not a Prometheus API response")
    if body.get("status") != "success" or not 200 <= status_code < 300:
        raise MetricsError(f"HTTP {status_code}: {body.get('errorType', 'error')}: {body.get('error', 'query failed')}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result)
    if kind != "vector" or not isinstance(result, list):
        raise MetricsError(f"expected an instant vector or scalar, got {kind!r}")
    if not result:
        return None
    if len(result) > 1:
        raise MetricsError(f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))")
    return _number(result[0].get("value"))


def _number(pair: Any) -> float:
    try:
        return float(pair[1])  # Prometheus sends values as strings: "0.5", "NaN", "+Inf"
    except (TypeError, ValueError, IndexError) as exc:
        raise MetricsError(f"malformed sample {pair!r}") from exc
