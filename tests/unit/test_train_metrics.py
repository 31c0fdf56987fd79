"""Metric selection (validated before fitting) and computation on real small fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import SVC, LinearSVC

from mlops_operator.runtime.train_config import InvalidInput
from mlops_operator.runtime.train_metrics import (
    CLASSIFICATION,
    REGRESSION,
    compute_metrics,
    select_metrics,
    task_of,
)

pytestmark = pytest.mark.unit


def test_given_estimators_when_task_derived_then_classifier_or_regressor():
    assert task_of(LogisticRegression()) == CLASSIFICATION
    assert task_of(LinearRegression()) == REGRESSION


def test_given_no_metrics_requested_then_task_defaults_and_duplicates_are_dropped():
    assert select_metrics([], CLASSIFICATION, LogisticRegression()) == ["accuracy", "f1_macro"]
    assert select_metrics([], REGRESSION, LinearRegression()) == ["r2", "rmse"]
    assert select_metrics(["roc_auc", "accuracy", "roc_auc"], CLASSIFICATION, LogisticRegression()) == ["roc_auc", "accuracy"]


@pytest.mark.parametrize(
    ("names", "task", "estimator", "message"),
    [
        (["accuracy", "auc"], CLASSIFICATION, LogisticRegression(), "unknown metric 'auc'"),
        (["r2"], CLASSIFICATION, LogisticRegression(), "metric 'r2' does not apply to a classification"),
        (["accuracy"], REGRESSION, LinearRegression(), "metric 'accuracy' does not apply to a regression"),
        (["log_loss"], CLASSIFICATION, SVC(), "needs predict_proba"),
    ],
)
def test_given_metric_that_cannot_be_computed_then_invalid_input_before_fitting(names, task, estimator, message):
    with pytest.raises(InvalidInput, match=message):
        select_metrics(names, task, estimator)


def test_given_model_without_probabilities_then_roc_auc_uses_the_decision_function():
    assert select_metrics(["roc_auc"], CLASSIFICATION, LinearSVC()) == ["roc_auc"]


def test_given_multiclass_fit_when_every_classification_metric_computed_then_values_in_range():
    X, y = load_iris(return_X_y=True)
    est = LogisticRegression(max_iter=500).fit(X[::2], y[::2])
    names = select_metrics(["accuracy", "precision_macro", "precision_weighted", "recall_macro",
                            "recall_weighted", "f1_macro", "f1_weighted", "roc_auc", "log_loss"], CLASSIFICATION, est)
    metrics, warnings = compute_metrics(names, est, X[1::2], y[1::2])
    assert warnings == []
    assert list(metrics) == names
    for name in names[:-1]:
        assert 0.8 < metrics[name] <= 1.0, name
    assert 0.0 < metrics["log_loss"] < 0.5


def test_given_binary_fit_when_roc_auc_then_positive_class_scores_are_used():
    X, y = load_iris(return_X_y=True)
    X, y = X[y < 2], y[y < 2]
    est = LinearSVC().fit(X, y)
    metrics, _ = compute_metrics(["roc_auc"], est, X, y)
    assert metrics["roc_auc"] == 1.0  # setosa vs versicolor is separable


def test_given_regression_fit_then_rmse_is_sqrt_of_mse_and_r2_positive():
    X, y = load_diabetes(return_X_y=True)
    est = LinearRegression().fit(X[:300], y[:300])
    metrics, _ = compute_metrics(["r2", "mae", "mse", "rmse"], est, X[300:], y[300:])
    assert metrics["rmse"] == pytest.approx(math.sqrt(metrics["mse"]))
    assert 0.3 < metrics["r2"] < 1.0 and metrics["mae"] > 0


def test_given_test_split_with_one_class_when_roc_auc_then_none_with_warning_not_a_number():
    X = np.arange(20.0).reshape(-1, 1)
    y = np.array([0] * 10 + [1] * 10)
    est = DummyClassifier(strategy="prior").fit(X, y)
    metrics, warnings = compute_metrics(["accuracy", "roc_auc"], est, X[:5], y[:5])
    assert metrics["roc_auc"] is None and metrics["accuracy"] is not None
    assert len(warnings) == 1 and "roc_auc" in warnings[0]
