"""Scoring the stable version on the challenger's test rows: metrics when it can, a reason when it cannot."""

from __future__ import annotations

import json

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import SVC

from mlops_operator.runtime.train_baseline import LoadedBaseline, score_baseline
from mlops_operator.runtime.train_config import BaselineRef, InvalidInput, parse_baseline
from mlops_operator.runtime.train_metrics import compute_metrics

pytestmark = pytest.mark.unit

REF = BaselineRef("bc-v1", "s3://mlops/models/ns/bc/bc-v1/", "a" * 64)
X, Y = load_breast_cancer(return_X_y=True, as_frame=True)
TRAIN, TEST = slice(0, 400), slice(400, None)


def fitted(estimator, columns=None):
    cols = columns or list(X.columns)
    return estimator.fit(X[cols].iloc[TRAIN], Y.iloc[TRAIN])


def test_given_a_stable_model_reading_a_subset_of_the_columns_when_scored_then_metrics_are_its_own_on_these_rows():
    stable = fitted(LogisticRegression(max_iter=5000), ["mean radius", "mean texture"])
    record = score_baseline(LoadedBaseline(REF, stable), ["accuracy", "roc_auc"], "classification",
                            X.iloc[TEST], Y.iloc[TEST])
    expected, _ = compute_metrics(["accuracy", "roc_auc"], stable, X.iloc[TEST][["mean radius", "mean texture"]],
                                  Y.iloc[TEST])
    assert record["metrics"] == expected and record["rows"] == len(X.iloc[TEST])
    assert record["version"] == "bc-v1" and record["uri"] == REF.uri and "reason" not in record


@pytest.mark.parametrize("loaded, task, rows, why", [
    (LoadedBaseline(REF, reason="cannot load stable version bc-v1: IntegrityError: x"), "classification", X,
     "IntegrityError: x"),
    (LoadedBaseline(REF, fitted(LogisticRegression(max_iter=5000))), "classification",
     X.rename(columns={"mean radius": "radius"}), "reads input column(s) 'mean radius'"),
    (LoadedBaseline(REF, fitted(LinearRegression())), "classification", X, "is a regression model"),
    (LoadedBaseline(REF, LogisticRegression(max_iter=5000).fit(X.iloc[TRAIN].to_numpy(), Y.iloc[TRAIN])),
     "classification", X, "records no input column names"),
    (LoadedBaseline(REF, fitted(LogisticRegression(max_iter=5000))), "classification",
     X.assign(**{"mean radius": "text"}), "failed on these test rows"),
])
def test_given_a_stable_version_it_cannot_score_when_scored_then_a_reason_and_no_metrics(loaded, task, rows, why):
    record = score_baseline(loaded, ["accuracy"], task, rows.iloc[TEST], Y.iloc[TEST])
    assert why in record["reason"] and "metrics" not in record


def test_given_a_metric_the_stable_model_cannot_compute_when_scored_then_that_metric_is_none_with_a_warning():
    stable = fitted(SVC())  # no predict_proba: no log_loss
    record = score_baseline(LoadedBaseline(REF, stable), ["accuracy", "log_loss"], "classification",
                            X.iloc[TEST], Y.iloc[TEST])
    assert record["metrics"]["log_loss"] is None and isinstance(record["metrics"]["accuracy"], float)
    assert any("log_loss" in w for w in record["warnings"])


def test_given_a_drift_reference_naming_the_inputs_when_fitted_without_names_then_scored_on_those_columns():
    cols = ["mean radius", "mean area"]
    stable = LogisticRegression(max_iter=5000).fit(X[cols].iloc[TRAIN].to_numpy(), Y.iloc[TRAIN])
    loaded = LoadedBaseline(REF, stable, reference={"features": {c: {} for c in cols}})
    record = score_baseline(loaded, ["accuracy"], "classification", X.iloc[TEST], Y.iloc[TEST])
    assert record["metrics"]["accuracy"] == (stable.predict(X[cols].iloc[TEST].to_numpy()) == Y.iloc[TEST]).mean()


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"MLOPS_BASELINE": ""}, None),
    ({"MLOPS_BASELINE": json.dumps({"version": "v1", "uri": "s3://b/p/", "sha256": "ab"})},
     BaselineRef("v1", "s3://b/p/", "ab")),
    ({"MLOPS_BASELINE": json.dumps({"version": "v1", "uri": "s3://b/p/"})}, BaselineRef("v1", "s3://b/p/")),
])
def test_given_the_baseline_env_when_parsed_then_the_reference_or_none(env, expected):
    assert parse_baseline(env) == expected


@pytest.mark.parametrize("raw", ['{"version": "v1"}', '{"uri": "s3://b/p/"}', "[1]", "{not json", '{"version": 1, "uri": "x"}'])
def test_given_a_malformed_baseline_env_when_parsed_then_invalid_input(raw):
    with pytest.raises(InvalidInput, match="MLOPS_BASELINE"):
        parse_baseline({"MLOPS_BASELINE": raw})

