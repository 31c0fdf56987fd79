"""Recent-traffic window and the periodic statistics computed from it (missing ratio, drift vs reference).

The request path only copies rows into a fixed ring buffer (a few microseconds); the statistics run every
`MLOPS_DRIFT_INTERVAL` seconds on a snapshot, using `mlops_operator.drift` against the `reference.json`
the trainer stored next to the model. Memory is bounded by `capacity` rows whatever the traffic.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_operator.drift.reference import compare_profile

DRIFT_TESTS = ("psi", "ks", "chi2")


class FeatureWindow:
    """The last `capacity` request rows (float64, NaN = missing) and their predictions."""

    def __init__(self, n_features: int, capacity: int = 2048):
        if capacity < 1:
            raise ValueError("window capacity must be >= 1")
        # Requests are predicted on worker threads (serve_limits.Lanes): one lock keeps rows and indices whole.
        self._lock = threading.Lock()
        self._rows = np.empty((capacity, n_features), dtype=np.float64)
        self._next = 0
        self._filled = 0
        self.predictions: deque[Any] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        return self._rows.shape[0]

    def add(self, x: np.ndarray) -> None:
        with self._lock:
            self._add(x)

    def _add(self, x: np.ndarray) -> None:
        cap, k = self.capacity, x.shape[0]
        if k >= cap:
            self._rows[:] = x[-cap:]
            self._next, self._filled = 0, cap
            return
        end = self._next + k
        if end <= cap:
            self._rows[self._next:end] = x
        else:
            split = cap - self._next
            self._rows[self._next:] = x[:split]
            self._rows[: k - split] = x[split:]
        self._next = end % cap
        self._filled = min(cap, self._filled + k)

    def add_predictions(self, y: np.ndarray) -> None:
        values = y.tolist()
        with self._lock:
            self.predictions.extend(values)

    def snapshot(self) -> tuple[np.ndarray, list[Any]]:
        """A copy of the rows held (order irrelevant to the statistics) and of the predictions."""
        with self._lock:
            return self._rows[: self._filled].copy(), list(self.predictions)


@dataclass(frozen=True)
class WindowSnapshot:
    rows: np.ndarray
    predictions: list[Any]
    feature_names: list[str]
    reference: Mapping[str, Any] | None

    def stats(self, min_rows: int) -> WindowStats:
        return window_stats(self.rows, self.predictions, self.feature_names, self.reference, min_rows)


@dataclass
class WindowStats:
    rows: int
    missing: dict[str, float]
    drift: dict[str, dict[str, float]] = field(default_factory=dict)  # {test: {feature: value}}
    prediction_drift: dict[str, float] = field(default_factory=dict)  # {test: value}


def _as_reference_values(values: np.ndarray, profile: Mapping[str, Any]) -> np.ndarray:
    """Categorical profiles key categories by `str(value)` of the training dtype; requests arrive as floats."""
    if profile.get("kind") != "categorical":
        return values
    dtype = profile.get("dtype")
    cast = int if dtype == "int" else bool if dtype == "bool" else None
    if cast is None:
        return values
    return np.array([None if math.isnan(v) else cast(v) for v in values.tolist()], dtype=object)


def _drift_values(drift: Any) -> dict[str, float]:
    return {test: float(value) for test in DRIFT_TESTS if (value := getattr(drift, test, None)) is not None}


def window_stats(
    rows: np.ndarray,
    predictions: Sequence[Any],
    feature_names: Sequence[str],
    reference: Mapping[str, Any] | None,
    min_rows: int,
) -> WindowStats:
    """Missing ratio per feature always; drift only with a reference and at least `min_rows` rows.

    Reference features are matched by name; a reference without a feature the model takes (or the
    reverse) simply yields no drift value for it rather than a wrong one.
    """
    n = rows.shape[0]
    missing = np.isnan(rows).mean(axis=0) if n else np.zeros(len(feature_names))
    stats = WindowStats(rows=n, missing={name: float(missing[j]) for j, name in enumerate(feature_names)})
    if reference is None or n < min_rows:
        return stats
    profiles = reference.get("features") or {}
    for j, name in enumerate(feature_names):
        profile = profiles.get(name)
        if profile is None:
            continue
        for test, value in _drift_values(compare_profile(profile, _as_reference_values(rows[:, j], profile))).items():
            stats.drift.setdefault(test, {})[name] = value
    if reference.get("prediction") and len(predictions) >= min_rows:
        stats.prediction_drift = _drift_values(compare_profile(reference["prediction"], np.asarray(predictions, dtype=object)))
    return stats
