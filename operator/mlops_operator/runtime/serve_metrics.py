"""Prometheus instruments of the model server (names and labels are the contract for the alert rules).

Module-level, as kserve does, with few labels: model, version, role (+ code, feature, test, result). The
namespace is not known to the server: Prometheus' scrape adds it (docs/retraining.md). Children are
bound once per server (`ServeMetrics`) so the hot path is a dict lookup and an increment, not a label
resolution under a lock.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mlops_operator.runtime.serve_asgi import LATENCY_BUCKETS
from mlops_operator.runtime.serve_drift import WindowStats
from mlops_operator.runtime.serve_feedback import CLASSIFICATION, RESULTS, Scored
from mlops_operator.runtime.serve_limits import REASONS

LABELS = ("model", "version", "role")

REQUESTS = Counter("mlops_requests_total", "Prediction requests by HTTP status code.", (*LABELS, "code"))
DURATION = Histogram(
    "mlops_request_duration_seconds", "Prediction request latency inside the server.", LABELS, buckets=LATENCY_BUCKETS
)
REJECTED = Counter(
    "mlops_rejected_requests_total", "Prediction requests refused before any model work, by reason "
    "(body_too_large, too_many_rows, overloaded, large_overloaded, malformed, nesting, huge_number, empty, invalid).",
    (*LABELS, "reason"),
)
MODEL_READY = Gauge("mlops_model_ready", "1 when the artifact is loaded and its sha256 verified, else 0.", LABELS)
FEATURE_MISSING = Gauge(
    "mlops_feature_missing_ratio", "Fraction of null values per feature over the recent request window.", (*LABELS, "feature")
)
FEATURE_DRIFT = Gauge(
    "mlops_feature_drift", "Drift statistic per feature over the recent window vs the training reference.", (*LABELS, "feature", "test")
)
PREDICTION_DRIFT = Gauge(
    "mlops_prediction_drift", "Drift of the recent predictions vs the predictions on the training reference.", (*LABELS, "test")
)
WINDOW_ROWS = Gauge("mlops_drift_window_rows", "Rows in the recent window the drift statistics are computed from.", LABELS)
# Label feedback (runtime/serve_feedback.py). The gauges are over the last MLOPS_FEEDBACK_WINDOW labelled rows
# (alert rules, dashboards, RetrainPolicy metric triggers); the counters let an analysis compute accuracy or MAE
# over its own window and across replicas: increase(correct) / increase(rows), increase(absolute_error) / increase(rows).
FEEDBACK = Counter("mlops_feedback_total", "Feedback requests by result (ok, invalid, unknown_id, expired_id, ...).",
                   (*LABELS, "result"))
FEEDBACK_ROWS = Counter("mlops_feedback_rows_total", "Rows that received a true label through accepted feedback.", LABELS)
FEEDBACK_CORRECT = Counter("mlops_feedback_correct_total", "Labelled rows the classifier predicted right.", LABELS)
FEEDBACK_ABSOLUTE_ERROR = Counter("mlops_feedback_absolute_error_total",
                                  "Sum of the regression model's absolute errors over its labelled rows.", LABELS)
ACCURACY = Gauge("mlops_model_accuracy", "Classification accuracy over the last labelled rows (feedback window).", LABELS)
MAE = Gauge("mlops_model_mae", "Regression mean absolute error over the last labelled rows (feedback window).", LABELS)
FEEDBACK_WINDOW_ROWS = Gauge("mlops_feedback_window_rows", "Labelled rows the accuracy or MAE gauge is computed from.", LABELS)


class ServeMetrics:
    """The instruments of one served (model, version, role), with children bound up front."""

    def __init__(self, model: str, version: str, role: str):
        self.labels = (model, version, role)
        self._codes: dict[int, Counter] = {}
        self.duration = DURATION.labels(*self.labels)
        self.ready = MODEL_READY.labels(*self.labels)
        self.window_rows = WINDOW_ROWS.labels(*self.labels)
        self.ready.set(0)
        self._feedback = {result: FEEDBACK.labels(*self.labels, result) for result in RESULTS}  # all from 0
        self._rejected = {reason: REJECTED.labels(*self.labels, reason) for reason in REASONS}

    def rejected(self, reason: str) -> None:
        self._rejected[reason].inc()

    def feedback_task(self, task: str) -> None:
        """Once the model is loaded: the row counters exist from 0, so the first labels are an increase."""
        FEEDBACK_ROWS.labels(*self.labels)
        (FEEDBACK_CORRECT if task == CLASSIFICATION else FEEDBACK_ABSOLUTE_ERROR).labels(*self.labels)

    def feedback(self, result: str, scored: Scored | None = None) -> None:
        self._feedback[result].inc()
        if scored is None:
            return
        FEEDBACK_ROWS.labels(*self.labels).inc(scored.rows)
        if scored.task == CLASSIFICATION:
            FEEDBACK_CORRECT.labels(*self.labels).inc(scored.total)
            ACCURACY.labels(*self.labels).set(scored.window_mean)
        else:
            FEEDBACK_ABSOLUTE_ERROR.labels(*self.labels).inc(scored.total)
            MAE.labels(*self.labels).set(scored.window_mean)
        FEEDBACK_WINDOW_ROWS.labels(*self.labels).set(scored.window_rows)

    def observe(self, code: int, seconds: float) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = REQUESTS.labels(*self.labels, str(code))
        child.inc()
        self.duration.observe(seconds)

    def set_window_stats(self, stats: WindowStats) -> None:
        """Publish the periodic window statistics (see `serve_drift.window_stats`)."""
        self.window_rows.set(stats.rows)
        for feature, ratio in stats.missing.items():
            FEATURE_MISSING.labels(*self.labels, feature).set(ratio)
        for test, values in stats.drift.items():
            for feature, value in values.items():
                FEATURE_DRIFT.labels(*self.labels, feature, test).set(value)
        for test, value in stats.prediction_drift.items():
            PREDICTION_DRIFT.labels(*self.labels, test).set(value)
