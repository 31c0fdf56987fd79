"""The builtin metric provider: the router's own counters, for clusters without Prometheus.

Each router replica exposes ``mlops_router_requests_total{variant,code}``,
``mlops_router_request_duration_seconds{variant}``, ``mlops_shadow_predictions_total{model,version,
result}`` and, for label feedback it passed on, ``mlops_router_feedback_rows_total{variant}`` and
``mlops_router_feedback_correct_total{variant}`` / ``mlops_router_feedback_absolute_error_total{variant}``
(counted from the model servers' own answers) on ``/metrics``. Counters only grow, so a rate needs two readings: this provider keeps its own
scrapes (per ModelDeployment, for an hour) and answers a windowed query from the difference between the
newest scrape and one at least ~``window`` older, per pod, treating a drop as a counter reset (the pod
restarted). Until such a pair exists it raises ``MetricsWarmingUp``: right after an operator restart the
run is skipped (the rollout holds about one interval) instead of judging numbers it cannot compute.

Queries are small selectors, ``errorRate{variant="candidate"}[30s]``; see ``builtin_query``. The variant
is the role a version is routed as, so a blue/green preview (never behind the router) has no data here:
pre-promotion analysis needs Prometheus, or ``autoPromote: false``. Custom PromQL is refused
(``MetricsError``) rather than guessed at.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict, deque
from datetime import timedelta
from typing import Awaitable, Callable, Iterable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

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
    MetricsWarmingUp,
    Target,
)

REQUESTS_TOTAL = "mlops_router_requests_total"
DURATION_BUCKET = "mlops_router_request_duration_seconds_bucket"
SHADOW_PREDICTIONS = "mlops_shadow_predictions_total"
FEEDBACK_ROWS = "mlops_router_feedback_rows_total"
FEEDBACK_CORRECT = "mlops_router_feedback_correct_total"
FEEDBACK_ABSOLUTE_ERROR = "mlops_router_feedback_absolute_error_total"
_KEEP = {REQUESTS_TOTAL, DURATION_BUCKET, SHADOW_PREDICTIONS, FEEDBACK_ROWS, FEEDBACK_CORRECT, FEEDBACK_ABSOLUTE_ERROR}
# Label-feedback ratios: the counter of scored rows' outcome each builtin divides by the labelled rows.
_PER_LABELLED_ROW = {ACCURACY: FEEDBACK_CORRECT, MAE: FEEDBACK_ABSOLUTE_ERROR}
_QUERY = re.compile(r'^(?P<metric>\w+)\{(?P<labels>[^{}]*)\}(?:\[(?P<window>\d+)s\])?$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WINDOW_SLACK = 0.8   # a baseline scrape at least 80 % of the window old will do (scrapes are not on a grid)

Series = tuple[str, frozenset[tuple[str, str]]]
Snapshot = dict[str, dict[Series, float]]  # metrics URL -> series -> value


def parse_metrics(text: str) -> dict[Series, float]:
    """The router series this provider reads, from one ``/metrics`` exposition."""
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _KEEP:
                out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` buckets (linear interpolation).

    >>> histogram_quantile(0.5, [(0.1, 50), (0.2, 100), (math.inf, 100)])
    0.1
    >>> histogram_quantile(0.99, [(0.1, 0), (0.2, 0), (math.inf, 10)])  # above the largest bound
    0.2
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == math.inf:
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def _matches(series: Series, name: str, labels: Mapping[str, str]) -> bool:
    if series[0] != name:
        return False
    have = dict(series[1])
    return all(have.get(k) == v for k, v in labels.items())


class BuiltinProvider:
    """Reads the router replicas of one ModelDeployment; ``targets`` lists their ``/metrics`` URLs."""

    name = "builtin"

    def __init__(self, targets: Callable[[], Awaitable[list[str]]], *, timeout: float = 3.0,
                 retention: timedelta = timedelta(hours=1), clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._targets = targets
        self._timeout = timeout
        self._retention = retention.total_seconds()
        self._clock = clock
        self._transport = transport
        self._history: deque[tuple[float, Snapshot]] = deque(maxlen=4096)

    # ---------------------------------------------------------------------------------- scraping
    async def _fetch(self, client: httpx.AsyncClient, url: str) -> tuple[str, dict[Series, float] | None]:
        try:
            response = await client.get(url)
            response.raise_for_status()
            return url, parse_metrics(response.text)
        except (httpx.HTTPError, ValueError):
            return url, None

    async def scrape(self) -> Snapshot:
        """Read every router replica now and keep the reading; ``MetricsError`` if none answered."""
        now = self._clock()
        if self._history and now - self._history[-1][0] < 1.0:
            return self._history[-1][1]  # several queries of one analysis run share one reading
        urls = await self._targets()
        if not urls:
            raise MetricsError("no router pod to read metrics from")
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
            answers = await asyncio.gather(*(self._fetch(client, url) for url in urls))
        snapshot = {url: series for url, series in answers if series is not None}
        if not snapshot:
            raise MetricsError(f"none of {len(urls)} router pods answered /metrics")
        self._history.append((now, snapshot))
        while self._history and now - self._history[0][0] > self._retention:
            self._history.popleft()
        return snapshot

    async def is_online(self) -> bool:
        try:
            await self.scrape()
            return True
        except MetricsError:
            return False

    # ---------------------------------------------------------------------------------- queries
    def builtin_query(self, metric: str, target: Target, window: timedelta) -> str:
        if metric in (AGREEMENT, COMPARISONS):
            return f'{metric}{{model="{target.model}",version="{target.version}"}}'
        return f'{metric}{{variant="{target.role}"}}[{max(1, int(window.total_seconds()))}s]'

    async def run_query(self, query: str) -> float | None:
        match = _QUERY.match(query.strip())
        if match is None:
            raise MetricsError("the builtin provider answers only its builtin checks; custom queries need Prometheus")
        metric, labels = match["metric"], dict(_LABEL.findall(match["labels"]))
        current = await self.scrape()
        if metric in (AGREEMENT, COMPARISONS):
            agree = self._sum(current, SHADOW_PREDICTIONS, {**labels, "result": "agree"})
            total = self._sum(current, SHADOW_PREDICTIONS, labels)
            if metric == COMPARISONS:
                return total
            return agree / total if total > 0 else math.nan
        if match["window"] is None:
            raise MetricsError(f"{metric} needs a window, e.g. [30s]")
        base = self._baseline(float(match["window"]))
        if base is None:  # no reading old enough yet: nothing to judge, never a guess
            raise MetricsWarmingUp(f"no reading {match['window']}s old yet (the provider keeps its own history)")
        variant = {"variant": labels.get("variant", "")}
        if metric == REQUESTS:
            return self._delta(current, base, REQUESTS_TOTAL, variant)
        if metric == LABELLED:
            return self._delta(current, base, FEEDBACK_ROWS, variant)
        if metric in _PER_LABELLED_ROW:
            outcome = _PER_LABELLED_ROW[metric]
            if not any(_matches(s, outcome, variant) for snap in current.values() for s in snap):
                return None  # no labels scored here by this kind of model (accuracy: a classifier; mae: a regressor)
            rows = self._delta(current, base, FEEDBACK_ROWS, variant)
            return self._delta(current, base, outcome, variant) / rows if rows > 0 else math.nan
        if metric == ERROR_RATE:
            total = self._delta(current, base, REQUESTS_TOTAL, variant)
            errors = sum(self._delta(current, base, REQUESTS_TOTAL, {**variant, "code": str(code)})
                         for code in self._codes(current, variant) if code >= 500)
            return errors / total if total > 0 else math.nan
        if metric in QUANTILES:
            les = {dict(s[1]).get("le") for snap in current.values() for s in snap if _matches(s, DURATION_BUCKET, variant)}
            buckets = [(float(le), self._delta(current, base, DURATION_BUCKET, {**variant, "le": le})) for le in les if le]
            return histogram_quantile(QUANTILES[metric], buckets)
        raise MetricsError(f"unknown builtin metric {metric!r}")

    def _baseline(self, window: float) -> Snapshot | None:
        now = self._history[-1][0]
        for at, snapshot in reversed(list(self._history)[:-1]):
            if now - at >= window * WINDOW_SLACK:
                return snapshot
        return None

    @staticmethod
    def _codes(snapshot: Snapshot, labels: Mapping[str, str]) -> set[int]:
        return {int(dict(s[1]).get("code", "0")) for series in snapshot.values() for s in series
                if _matches(s, REQUESTS_TOTAL, labels)}

    @staticmethod
    def _sum(snapshot: Snapshot, name: str, labels: Mapping[str, str]) -> float:
        return sum(v for series in snapshot.values() for s, v in series.items() if _matches(s, name, labels))

    @staticmethod
    def _delta(current: Snapshot, base: Snapshot, name: str, labels: Mapping[str, str]) -> float:
        """Increase since ``base`` summed over pods; a counter lower than before was reset (count it all)."""
        total = 0.0
        for url, series in current.items():
            before = base.get(url, {})
            for s, value in series.items():
                if _matches(s, name, labels):
                    old = before.get(s, 0.0)
                    total += value - old if value >= old else value
        return total


# ------------------------------------------------------------------------- one provider per ModelDeployment

_PROVIDERS: OrderedDict[tuple[str, str], BuiltinProvider] = OrderedDict()
_MAX_PROVIDERS = 512


def provider_for(namespace: str, deployment: str,
                 targets: Callable[[], Awaitable[list[str]]]) -> BuiltinProvider:
    """The long-lived provider of one ModelDeployment (its scrape history is what makes rates possible)."""
    key = (namespace, deployment)
    provider = _PROVIDERS.get(key)
    if provider is None:
        provider = _PROVIDERS[key] = BuiltinProvider(targets)
        while len(_PROVIDERS) > _MAX_PROVIDERS:
            _PROVIDERS.popitem(last=False)
    _PROVIDERS.move_to_end(key)
    provider._targets = targets
    return provider


def forget(namespace: str, deployment: str) -> None:
    """Drop a deleted ModelDeployment's scrape history."""
    _PROVIDERS.pop((namespace, deployment), None)
