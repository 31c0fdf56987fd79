"""Gates: fail safe on missing data, direction from the metric, nothing-to-beat passes with a note."""

from __future__ import annotations

import math

import pytest

from mlops_operator.api.v1alpha1.training import Gates
from mlops_operator.logic.gates import Baseline, evaluate_gates

pytestmark = pytest.mark.unit


def _gates(**spec) -> Gates:
    return Gates.model_validate(spec)


@pytest.mark.parametrize("gates, metrics, passed", [
    ({"minMetrics": {"accuracy": 0.9}}, {"accuracy": 0.95}, True),
    ({"minMetrics": {"accuracy": 0.9}}, {"accuracy": 0.9}, True),       # the bound itself passes
    ({"minMetrics": {"accuracy": 0.9}}, {"accuracy": 0.89}, False),
    ({"minMetrics": {"accuracy": 0.9}}, {}, False),                     # not reported: fail safe
    ({"minMetrics": {"accuracy": 0.9}}, {"accuracy": math.nan}, False),
    ({"minMetrics": {"accuracy": 0.9}}, {"accuracy": "0.95"}, False),   # not a number
    ({"maxMetrics": {"log_loss": 0.3}}, {"log_loss": 0.2}, True),
    ({"maxMetrics": {"log_loss": 0.3}}, {"log_loss": 0.31}, False),
    ({"minMetrics": {"accuracy": 0.9, "f1_macro": 0.9}}, {"accuracy": 0.95, "f1_macro": 0.5}, False),
])
def test_given_bounds_when_evaluated_then_verdict(gates, metrics, passed):
    verdict = evaluate_gates(_gates(**gates), metrics, None)
    assert verdict.passed is passed
    assert bool(verdict.failures) is not passed


def test_given_no_gates_when_evaluated_then_passes_without_results():
    verdict = evaluate_gates(None, {}, None)
    assert verdict.passed and verdict.results == []


def test_given_failed_bound_when_evaluated_then_failure_names_metric_value_and_bound():
    verdict = evaluate_gates(_gates(minMetrics={"accuracy": 0.9}), {"accuracy": 0.85}, None)
    assert verdict.failures == ["minMetrics: accuracy 0.85 is not >= 0.9"]
    assert verdict.results == [{"gate": "minMetrics", "metric": "accuracy", "value": 0.85, "threshold": 0.9,
                                "passed": False}]


MBS_AUC = {"mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc", "margin": 0.01}}
MBS_LOSS = {"mustBeatStable": {"modelDeployment": "bc", "metric": "log_loss"}}


@pytest.mark.parametrize("gates, value, stable, passed", [
    (MBS_AUC, 0.96, 0.95, True),     # beats by the margin exactly
    (MBS_AUC, 0.955, 0.95, False),   # better, but not by the margin
    (MBS_LOSS, 0.20, 0.25, True),    # lower is better for log_loss
    (MBS_LOSS, 0.25, 0.25, True),    # margin 0: a tie is "not worse"
    (MBS_LOSS, 0.30, 0.25, False),
])
def test_given_stable_version_when_must_beat_stable_then_direction_and_margin_apply(gates, value, stable, passed):
    metric = gates["mustBeatStable"]["metric"]
    verdict = evaluate_gates(_gates(**gates), {metric: value}, Baseline("bc", "bc-v1", {metric: stable}))
    assert verdict.passed is passed


def test_given_no_stable_version_yet_when_must_beat_stable_then_passes_with_note():
    verdict = evaluate_gates(_gates(**MBS_AUC), {"roc_auc": 0.5}, Baseline("bc"))
    assert verdict.passed and "no stable version" in verdict.notes[0]


def test_given_stable_without_metric_when_must_beat_stable_then_passes_with_note():
    verdict = evaluate_gates(_gates(**MBS_AUC), {"roc_auc": 0.5}, Baseline("bc", "bc-v1", {"accuracy": 0.9}))
    assert verdict.passed and "bc-v1" in verdict.notes[0]


def test_given_candidate_without_metric_when_must_beat_stable_then_fails():
    verdict = evaluate_gates(_gates(**MBS_AUC), {}, Baseline("bc", "bc-v1", {"roc_auc": 0.9}))
    assert not verdict.passed


def test_given_must_beat_stable_without_baseline_when_evaluated_then_programming_error():
    with pytest.raises(ValueError):
        evaluate_gates(_gates(**MBS_AUC), {"roc_auc": 0.9}, None)
