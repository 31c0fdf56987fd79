"""Prometheus instruments of the router: per-variant traffic, configuration state, shadow agreement.

`mlops_router_requests_total{variant,code}` is what the operator's builtin metric provider reads when no
Prometheus is installed, so its labels stay exactly these two (and so do those of the feedback row counters,
which it reads for `accuracy` and `mae`). Shadow agreement counts rows (one
prediction each), labelled with the shadow's version so a new shadow starts from a clean series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mlops_operator.runtime.serve_limits import REASONS
from mlops_operator.runtime.serve_asgi import LATENCY_BUCKETS

REQUESTS = Counter("mlops_router_requests_total", "Requests answered per variant and HTTP status.", ("variant", "code"))
DURATION = Histogram(
    "mlops_router_request_duration_seconds", "Time from request received to response sent, per variant.", ("variant",),
    buckets=LATENCY_BUCKETS,
)
REJECTED = Counter(
    "mlops_router_rejected_total", "Requests refused before being forwarded, by reason (body_too_large, overloaded, "
    "large_overloaded).", ("reason",),
)
GENERATION = Gauge("mlops_router_config_generation", "Generation of the configuration in effect.")
WEIGHT = Gauge("mlops_router_weight_percent", "Share of primary traffic per variant (shadow: mirrored share).", ("variant",))
CONFIG_REFUSED = Counter(
    "mlops_router_config_refused_total", "Configurations not applied (invalid, stale or conflicting), by source.", ("source",)
)
FEEDBACK = Counter(
    "mlops_router_feedback_total", "Label feedback answered, by the variant whose answer was sent (none: no variant) "
    "and HTTP status.", ("variant", "code"),
)
# What the builtin metric provider computes accuracy and MAE from when no Prometheus is installed: the rows each
# variant's server scored (its 200 answer says how many, how many it had predicted right or their absolute error).
FEEDBACK_ROWS = Counter("mlops_router_feedback_rows_total", "Labelled rows accepted by each variant's server.", ("variant",))
FEEDBACK_CORRECT = Counter(
    "mlops_router_feedback_correct_total", "Labelled rows each variant's classifier had predicted right.", ("variant",)
)
FEEDBACK_ABSOLUTE_ERROR = Counter(
    "mlops_router_feedback_absolute_error_total", "Sum of the absolute errors each variant's regression model made "
    "on its labelled rows.", ("variant",),
)
SHADOW_REQUESTS = Counter(
    "mlops_shadow_requests_total", "Mirrored requests by outcome: ok, error, dropped (queue full).", ("model", "version", "outcome")
)
SHADOW_PREDICTIONS = Counter(
    "mlops_shadow_predictions_total", "Shadow predictions compared with the primary's, by result: agree, disagree.",
    ("model", "version", "result"),
)
SHADOW_AGREEMENT = Gauge(
    "mlops_shadow_agreement_ratio", "Fraction of shadow predictions equal to the primary's since this shadow version started.",
    ("model", "version"),
)


class RouterMetrics:
    """Per-variant children bound once; the request path does a dict lookup and two cheap updates."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._rejected = {reason: REJECTED.labels(reason) for reason in REASONS}

    def rejected(self, reason: str) -> None:
        self._rejected[reason].inc()

    def observe(self, variant: str, code: int, seconds: float) -> None:
        child = self._requests.get((variant, code))
        if child is None:
            child = self._requests[(variant, code)] = REQUESTS.labels(variant, str(code))
        child.inc()
        hist = self._durations.get(variant)
        if hist is None:
            hist = self._durations[variant] = DURATION.labels(variant)
        hist.observe(seconds)

    @staticmethod
    def feedback(variant: str, code: int) -> None:
        FEEDBACK.labels(variant, str(code)).inc()

    @staticmethod
    def feedback_rows(variant: str, rows: int, correct: int | None, absolute_error: float | None) -> None:
        """Rows a variant's server scored: a classifier's `correct` rows, or a regression model's `absolute_error`
        (the other one None)."""
        FEEDBACK_ROWS.labels(variant).inc(rows)
        if correct is not None:
            FEEDBACK_CORRECT.labels(variant).inc(correct)
        if absolute_error is not None:
            FEEDBACK_ABSOLUTE_ERROR.labels(variant).inc(absolute_error)

    @staticmethod
    def config_applied(generation: int, weights: dict[str, float]) -> None:
        GENERATION.set(generation)
        for variant in ("stable", "candidate", "shadow"):
            WEIGHT.labels(variant).set(weights.get(variant, 0.0))

    @staticmethod
    def config_refused(source: str) -> None:
        CONFIG_REFUSED.labels(source).inc()
