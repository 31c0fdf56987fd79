"""Label feedback for `mlops-serve`: remembered predictions, parsing feedback, scoring it. Pure, no I/O.

A client that learns the true outcome of a prediction later (a fraud confirmed, a diagnosis made) posts
the labels back, either by the prediction's id or with the predictions themselves::

    POST /v1/models/<model>:feedback     {"id": "<prediction id>", "labels": [1, 0, 1]}
    POST /v2/models/<model>/feedback     {"predictions": [1, 0, 1], "labels": [1, 1, 1]}

By id, the server looks up what it predicted for that request (`PredictionStore`); with explicit
predictions it takes them as given. Each labelled row is scored (classification: right or wrong;
regression: the absolute error) and enters a sliding window of the last N labelled rows
(`FeedbackWindow`), whose mean is the accuracy or MAE the server exports.

Everything is bounded: the store keeps at most `max_entries` predictions holding at most `max_rows` rows
together, each for `ttl` seconds (the oldest go first); ids longer than `MAX_ID_LENGTH` are answered but
not remembered. Every client mistake raises `FeedbackError` with an HTTP status, a `result` label for
`mlops_feedback_total` and a message that names the problem.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CLASSIFICATION = "classification"
REGRESSION = "regression"
MAX_ID_LENGTH = 256
_SCALAR_TYPES = (int, float)

# Results of one feedback request (the `result` label of mlops_feedback_total); every one is exported at 0.
OK = "ok"
INVALID = "invalid"            # not JSON, wrong shape, wrong length, non-numeric or null labels
UNKNOWN_ID = "unknown_id"      # never predicted here, or forgotten (pushed out by newer predictions)
EXPIRED_ID = "expired_id"      # predicted here, but longer ago than the TTL
DUPLICATE = "duplicate"        # that prediction already got its labels
TOO_LARGE = "too_large"        # the body is over the limit
OVERLOADED = "overloaded"      # refused with 429: the server's in-flight caps (spec.serving.limits) were reached
NOT_READY = "not_ready"        # no model loaded yet
ERROR = "error"                # the server's own fault (a bug): 500
RESULTS = (OK, INVALID, UNKNOWN_ID, EXPIRED_ID, DUPLICATE, TOO_LARGE, OVERLOADED, NOT_READY, ERROR)


class FeedbackError(Exception):
    """Feedback the server refuses: `status` is the HTTP answer, `result` the counter label."""

    def __init__(self, status: int, result: str, message: str):
        super().__init__(message)
        self.status, self.result = status, result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------ the store
@dataclass
class _Entry:
    predictions: np.ndarray | None  # None once labelled (the tombstone answers "already labelled")
    rows: int
    expires_at: float


class PredictionStore:
    """id -> what was predicted, for the most recent predictions only (bounded count, rows and age).

    Insertion-ordered: the oldest entry is always first, so eviction by count, rows or age pops from the
    front. A labelled entry keeps only a tombstone (no rows) until it ages out, so a second feedback for
    the same id is answered "already labelled" rather than "unknown".
    """

    def __init__(self, max_entries: int = 10_000, max_rows: int = 100_000, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_entries < 1 or max_rows < 1 or ttl <= 0:
            raise ValueError("max_entries and max_rows must be >= 1 and ttl > 0")
        self.max_entries, self.max_rows, self.ttl = max_entries, max_rows, ttl
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._rows = 0  # rows held by entries not yet labelled

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def rows(self) -> int:
        return self._rows

    def remember(self, prediction_id: str, predictions: np.ndarray) -> bool:
        """Keep `predictions` under `prediction_id` (a reused id now means this prediction); False if it
        cannot be kept at all (an over-long id, or more rows than the whole store may hold)."""
        rows = int(predictions.shape[0]) if predictions.ndim else 1
        if len(prediction_id) > MAX_ID_LENGTH or rows > self.max_rows:
            return False
        now = self._clock()
        self._drop(self._entries.pop(prediction_id, None))
        self._entries[prediction_id] = _Entry(predictions, rows, now + self.ttl)
        self._rows += rows
        self._evict(now)
        return True

    def take(self, prediction_id: str) -> np.ndarray:
        """The predictions of `prediction_id`, marking it labelled; FeedbackError if unknown, expired or
        labelled already."""
        now = self._clock()
        entry = self._entries.get(prediction_id)
        if entry is None:
            raise FeedbackError(404, UNKNOWN_ID, f"unknown prediction id {_short(prediction_id)}: this server remembers "
                                                 f"its last {self.max_entries} predictions for {self.ttl:g}s")
        if entry.expires_at <= now:
            self._drop(self._entries.pop(prediction_id))
            raise FeedbackError(404, EXPIRED_ID, f"prediction id {_short(prediction_id)} expired: predictions are "
                                                 f"remembered for {self.ttl:g}s")
        if entry.predictions is None:
            raise FeedbackError(409, DUPLICATE, f"prediction id {_short(prediction_id)} already has labels")
        return entry.predictions

    def labelled(self, prediction_id: str) -> None:
        """Free the rows of a prediction whose labels were accepted; keep the tombstone until it expires."""
        entry = self._entries.get(prediction_id)
        if entry is not None and entry.predictions is not None:
            self._rows -= entry.rows
            entry.predictions, entry.rows = None, 0

    def _drop(self, entry: _Entry | None) -> None:
        if entry is not None:
            self._rows -= entry.rows

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if len(entries) > self.max_entries or self._rows > self.max_rows or oldest.expires_at <= now:
                self._drop(entries.popitem(last=False)[1])
            else:
                return


# ------------------------------------------------------------------------------------------ the window
class FeedbackWindow:
    """The scores of the last `size` labelled rows (1/0 for right/wrong, or absolute errors) and their mean."""

    def __init__(self, size: int = 1000):
        if size < 1:
            raise ValueError("the feedback window needs at least one row")
        self._scores: deque[float] = deque(maxlen=size)

    def add(self, scores: np.ndarray) -> None:
        self._scores.extend(float(s) for s in scores[-self._scores.maxlen:])

    @property
    def rows(self) -> int:
        return len(self._scores)

    def mean(self) -> float:
        return math.fsum(self._scores) / len(self._scores) if self._scores else math.nan


# ------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class Feedback:
    """One parsed feedback request: by `prediction_id`, or with explicit `predictions` (never both)."""

    labels: list[Any]
    prediction_id: str | None = None
    predictions: list[Any] | None = None
    version: str | None = None


def parse_feedback(doc: Any) -> Feedback:
    """Validate the shape of a feedback document (the JSON already parsed); FeedbackError names the problem."""
    if not isinstance(doc, dict):
        raise FeedbackError(400, INVALID, 'feedback must be a JSON object with "labels" and either "id" or "predictions"')
    labels, prediction_id, predictions, version = doc.get("labels"), doc.get("id"), doc.get("predictions"), doc.get("version")
    if not isinstance(labels, list) or not labels:
        raise FeedbackError(400, INVALID, '"labels" must be a non-empty list (one label per row)')
    if (prediction_id is None) == (predictions is None):
        raise FeedbackError(400, INVALID, 'give exactly one of "id" (a prediction id) or "predictions"')
    if prediction_id is not None and (not isinstance(prediction_id, str) or not prediction_id):
        raise FeedbackError(400, INVALID, '"id" must be a non-empty string (the id of a prediction answer)')
    if predictions is not None:
        if not isinstance(predictions, list):
            raise FeedbackError(400, INVALID, '"predictions" must be a list (one predicted value per row)')
        if len(predictions) != len(labels):
            raise FeedbackError(400, INVALID, f'{len(labels)} labels for {len(predictions)} predictions: give one label per prediction')
    if version is not None and not isinstance(version, str):
        raise FeedbackError(400, INVALID, '"version" must be a string')
    return Feedback(labels, prediction_id, predictions, version)


def _numbers(values: list[Any], what: str) -> np.ndarray:
    for i, value in enumerate(values):
        if value is None:
            raise FeedbackError(400, INVALID, f"{what}[{i}] is null; every row needs a value")
        if isinstance(value, bool) or not isinstance(value, _SCALAR_TYPES) or not math.isfinite(value):
            raise FeedbackError(400, INVALID, f"{what}[{i}] is {_short(value)}; this model's {what} are finite numbers")
    return np.asarray(values, dtype=np.float64)


def _strings(values: list[Any], what: str) -> np.ndarray:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise FeedbackError(400, INVALID, f"{what}[{i}] is {_short(value)}; this model's {what} are class names (strings)")
    return np.asarray(values, dtype=object)


def as_values(values: list[Any], what: str, numeric: bool) -> np.ndarray:
    """Labels (or explicit predictions) as the model's kind of value: numbers, or class-name strings."""
    return _numbers(values, what) if numeric else _strings(values, what)


def stored_values(predictions: np.ndarray, numeric: bool) -> np.ndarray:
    """Remembered predictions in the form `score` compares; one value per row, or FeedbackError."""
    if predictions.ndim != 1:
        raise FeedbackError(400, INVALID, f"this prediction has {predictions.shape[1:]} values per row; "
                                          "feedback takes one predicted value per row")
    return predictions.astype(np.float64) if numeric else predictions.astype(str).astype(object)


def score(predicted: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """Per row: 1.0 if right else 0.0 (classification), or the absolute error (regression)."""
    if len(predicted) != len(labels):
        raise FeedbackError(400, INVALID, f"{len(labels)} labels for a prediction of {len(predicted)} rows: "
                                          "give one label per row")
    if task == CLASSIFICATION:
        return (predicted == labels).astype(np.float64)
    return np.abs(predicted.astype(np.float64) - labels.astype(np.float64))


# ------------------------------------------------------------------------------------------ together
@dataclass(frozen=True)
class Scored:
    """What one accepted feedback added: its rows, their total score, and the window after it."""

    task: str
    rows: int
    total: float            # rows predicted right (classification) or the sum of absolute errors (regression)
    window_mean: float      # accuracy or MAE over the window
    window_rows: int

    def answer(self, model: str, version: str) -> dict[str, Any]:
        """The 200 body (the router reads `rows` and `correct` for its own counters)."""
        body: dict[str, Any] = {"model_name": model, "model_version": version, "rows": self.rows}
        if self.task == CLASSIFICATION:
            body.update(correct=int(self.total), accuracy=self.window_mean)
        else:
            body.update(absolute_error=self.total, mae=self.window_mean)
        body["window_rows"] = self.window_rows
        return body


class FeedbackBook:
    """The remembered predictions of one server and the sliding window its labels are scored into."""

    def __init__(self, store: PredictionStore, window: FeedbackWindow):
        self.store, self.window = store, window

    def remember(self, prediction_id: str, predictions: np.ndarray) -> bool:
        return self.store.remember(prediction_id, predictions)

    def record(self, feedback: Feedback, task: str, numeric: bool) -> Scored:
        """Score `feedback` against what was predicted; FeedbackError (nothing recorded) for any mistake."""
        labels = as_values(feedback.labels, "labels", numeric)
        if feedback.prediction_id is not None:
            predicted = stored_values(self.store.take(feedback.prediction_id), numeric)
        else:
            predicted = as_values(feedback.predictions or [], "predictions", numeric)
        scores = score(predicted, labels, task)
        if feedback.prediction_id is not None:
            self.store.labelled(feedback.prediction_id)
        self.window.add(scores)
        return Scored(task, len(scores), math.fsum(scores), self.window.mean(), self.window.rows)
