"""The metric provider interface: two questions (run a query, are you there?) plus how to ask for a builtin.

Like Flagger's ``RunQuery``/``IsOnline``: every provider answers a query with one number or ``None`` (no
data), and raises ``MetricsError`` when it cannot answer at all. The difference matters to the analysis:
no data holds a rollout, an error counts against it once users are on the candidate. Queries for the
builtin checks differ per provider (PromQL for Prometheus, counter selectors for the builtin provider),
so each provider also writes its own (``builtin_query``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

# Builtin metric names a provider must be able to write a query for.
ERROR_RATE = "errorRate"
LATENCY_P95 = "latencyP95Seconds"
LATENCY_P99 = "latencyP99Seconds"
REQUESTS = "requests"            # requests answered in the window: the sample count of the checks
AGREEMENT = "agreement"          # fraction of shadow predictions equal to stable's
COMPARISONS = "comparisons"      # shadow predictions compared: the sample count of agreement
ACCURACY = "accuracy"            # fraction of labelled rows predicted right (label feedback, classifiers)
MAE = "mae"                      # mean absolute error of labelled rows (label feedback, regression models)
LABELLED = "labelledRows"        # rows labelled through feedback in the window: the sample count of accuracy and mae
QUANTILES = {LATENCY_P95: 0.95, LATENCY_P99: 0.99}


class MetricsError(Exception):
    """The provider could not answer: unreachable, refused, a bad query or an ambiguous result."""


class MetricsWarmingUp(MetricsError):
    """The provider cannot measure a window yet (e.g. no earlier reading): skip this run, do not judge it."""


@dataclass(frozen=True)
class Target:
    """Whose metrics: one version of a model served by one ModelDeployment."""

    namespace: str
    deployment: str
    model: str
    version: str
    role: str  # stable | candidate | shadow | preview: the router variant it is served as


class MetricProvider(Protocol):
    name: str

    async def run_query(self, query: str) -> float | None:
        """One number; None when there is no data; ``MetricsError`` when it cannot be answered."""
        ...

    async def is_online(self) -> bool:
        """Whether queries can be answered now (checked before any traffic moves)."""
        ...

    def builtin_query(self, metric: str, target: Target, window: timedelta) -> str:
        """The query of builtin ``metric`` for ``target`` over the last ``window``."""
        ...
