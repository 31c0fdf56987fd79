"""Metric providers (Prometheus HTTP API; the builtin router counters) and one analysis run over them.

``provider_for`` picks Prometheus when a URL is configured, else the builtin provider of the
ModelDeployment (kept across passes: it computes rates from its own earlier scrapes). ``measure`` runs
the checks of one analysis run and turns every failure into a result with an error, never an exception:
the analysis decides what an error means. The one exception is ``MetricsWarmingUp``: a provider that
cannot measure a window *yet* (the builtin one right after an operator restart) skips the run instead
of producing a "no data" verdict that ``onNoData: fail`` would count.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Iterable

from mlops_operator.logic.analysis import SAMPLES_OF, Check, MetricResult, render_query
from mlops_operator.providers.metrics.base import (
    REQUESTS,
    MetricProvider,
    MetricsError,
    MetricsWarmingUp,
    Target,
)

MIN_WINDOW = timedelta(seconds=10)  # rate() needs two scrapes inside the window


async def _ask(provider: MetricProvider, query: str) -> tuple[float | None, str | None]:
    try:
        return await provider.run_query(query), None
    except MetricsWarmingUp:
        raise
    except MetricsError as exc:
        return None, f"{provider.name}: {exc}"


def _count(value: float | None) -> int | None:
    return int(round(value)) if value is not None and math.isfinite(value) else None


async def measure(provider: MetricProvider, checks: Iterable[Check], target: Target,
                  window: timedelta) -> tuple[MetricResult, ...]:
    """Every check's value and sample count for ``target`` over the last ``window``."""
    window = max(window, MIN_WINDOW)
    checks = list(checks)
    requests, requests_error = None, None
    if any(c.builtin not in SAMPLES_OF for c in checks):
        raw, requests_error = await _ask(provider, provider.builtin_query(REQUESTS, target, window))
        requests = _count(raw)
    results = []
    for check in checks:
        if check.builtin in SAMPLES_OF:  # agreement, accuracy: their own sample count, not requests
            raw, error = await _ask(provider, provider.builtin_query(SAMPLES_OF[check.builtin], target, window))
            samples = _count(raw)
            value, value_error = await _ask(provider, provider.builtin_query(check.builtin, target, window))
            results.append(MetricResult(check.name, value, samples, error or value_error))
            continue
        if check.builtin:
            query = provider.builtin_query(check.builtin, target, window)
        else:
            query = render_query(check.query or "", namespace=target.namespace, model=target.model,
                                 version=target.version)
        value, error = await _ask(provider, query)
        results.append(MetricResult(check.name, value, requests, error or requests_error))
    return tuple(results)


__all__ = ["MetricProvider", "MetricsError", "MetricsWarmingUp", "Target", "measure"]
