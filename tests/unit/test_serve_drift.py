"""The server's recent-traffic window and the drift / missing-ratio gauges computed from it."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.linear_model import LogisticRegression

from mlops_operator.drift.reference import reference_stats
from mlops_operator.runtime.serve_drift import FeatureWindow, window_stats
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = pytest.mark.unit

NAMES = ["a", "b", "c"]


def training_data(rows: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(0, 1, rows), rng.normal(5, 2, rows), rng.integers(0, 3, rows)]).astype(float)


@pytest.fixture(scope="module")
def reference() -> dict:
    x = training_data()
    return reference_stats(x, NAMES, categorical=["c"], predictions=(x[:, 0] > 0).astype(int), predictions_categorical=True)


def test_given_more_rows_than_capacity_when_added_in_batches_then_only_the_latest_are_kept():
    window = FeatureWindow(2, capacity=5)
    for start in range(0, 12, 3):  # 4 batches of 3 rows: 0..11, wrapping around the ring
        window.add(np.array([[i, -i] for i in range(start, start + 3)], dtype=float))
    rows, _ = window.snapshot()
    assert sorted(rows[:, 0].tolist()) == [7, 8, 9, 10, 11]
    window.add(np.arange(20, dtype=float).reshape(10, 2))  # one batch larger than the ring
    assert sorted(window.snapshot()[0][:, 0].tolist()) == [10, 12, 14, 16, 18]


def test_given_few_rows_when_stats_computed_then_missing_ratio_but_no_drift(reference):
    rows = np.array([[0.1, np.nan, 1], [0.2, 5.0, np.nan], [0.3, np.nan, 2]])
    stats = window_stats(rows, [0, 1, 1], NAMES, reference, min_rows=100)
    assert stats.rows == 3
    assert stats.missing == pytest.approx({"a": 0.0, "b": 2 / 3, "c": 1 / 3})
    assert stats.drift == {} and stats.prediction_drift == {}


def test_given_same_distribution_when_stats_computed_then_psi_stays_low(reference):
    current = training_data(1000, seed=1)
    stats = window_stats(current, (current[:, 0] > 0).astype(int).tolist(), NAMES, reference, min_rows=100)
    assert max(stats.drift["psi"].values()) < 0.1
    assert stats.drift["ks"].keys() == {"a", "b"} and stats.drift["chi2"].keys() == {"c"}
    assert stats.prediction_drift["psi"] < 0.1


def test_given_one_shifted_feature_and_skewed_predictions_when_stats_computed_then_only_they_drift(reference):
    current = training_data(1000, seed=2)
    current[:, 1] += 4.0  # two standard deviations
    stats = window_stats(current, [1] * 1000, NAMES, reference, min_rows=100)
    assert stats.drift["psi"]["b"] > 0.25  # the shipped alert threshold
    assert stats.drift["psi"]["a"] < 0.1 and stats.drift["psi"]["c"] < 0.1
    assert stats.prediction_drift["psi"] > 0.25


def test_given_integer_categories_arriving_as_floats_when_compared_then_they_match_the_reference(reference):
    current = training_data(1000, seed=3)
    assert current[:, 2].dtype == np.float64  # what the server holds: 0.0, 1.0, 2.0
    stats = window_stats(current, [], NAMES, reference, min_rows=100)
    assert stats.drift["psi"]["c"] < 0.05  # "1.0" vs "1" would make every value unseen


async def test_given_served_traffic_when_window_published_then_drift_and_missing_gauges_are_set(reference):
    x = training_data()
    model = SklearnModel("drift-m", "v1", runtime=ModelRuntime(LogisticRegression().fit(x, x[:, 0] > 0), feature_names=NAMES),
                         reference=reference)
    shifted = training_data(500, seed=4)
    shifted[:, 1] += 4.0
    shifted[::4, 0] = np.nan
    model.runtime.predict(shifted[1::4])  # 125 complete rows, scored
    model.runtime.window.add(shifted[::4])  # 125 rows missing "a" (what a model with an imputer would see)
    metrics = ServeMetrics("drift-m", "v1", "stable")
    metrics.set_window_stats(model.window_snapshot().stats(min_rows=100))
    labels = {"model": "drift-m", "version": "v1", "role": "stable"}
    assert REGISTRY.get_sample_value("mlops_feature_drift", {**labels, "feature": "b", "test": "psi"}) > 0.25
    assert REGISTRY.get_sample_value("mlops_feature_missing_ratio", {**labels, "feature": "a"}) == pytest.approx(0.5)
    assert REGISTRY.get_sample_value("mlops_drift_window_rows", labels) == 250
