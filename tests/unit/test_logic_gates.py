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


# ------------------------------------------------------------------- mustBeatStable on the same rows

ACC = {"mustBeatStable": {"modelDeployment": "bc", "metric": "accuracy", "margin": 0.01}}
RMSE = {"mustBeatStable": {"modelDeployment": "bc", "metric": "rmse", "margin": 0.5}}
STABLE = Baseline("bc", "bc-v1", {"accuracy": 0.99, "rmse": 40.0})  # recorded at its own training


def scored(metrics: dict | None = None, version: str = "bc-v1", rows: int = 114, reason: str | None = None) -> dict:
    """The report's ``baseline`` record as the trainer writes it."""
    return {"version": version, "rows": rows, **({"metrics": metrics} if metrics is not None else {}),
            **({"reason": reason} if reason else {})}


@pytest.mark.parametrize("gates, value, record, passed, comparison, baseline, threshold", [
    # same rows: the recorded 0.99 is ignored, the same-rows score decides
    (ACC, 0.95, scored({"accuracy": 0.93}), True, "sameRows", 0.93, 0.94),
    (ACC, 0.94, scored({"accuracy": 0.93}), True, "sameRows", 0.93, 0.94),     # better by the margin exactly
    (ACC, 0.935, scored({"accuracy": 0.93}), False, "sameRows", 0.93, 0.94),   # better, not by the margin
    (ACC, 0.90, scored({"accuracy": 0.93}), False, "sameRows", 0.93, 0.94),
    (RMSE, 50.0, scored({"rmse": 51.0}), True, "sameRows", 51.0, 50.5),        # lower is better
    (RMSE, 50.8, scored({"rmse": 51.0}), False, "sameRows", 51.0, 50.5),
    # no same-rows score of the CURRENT stable version: today's comparison with its recorded metric
    (ACC, 0.995, None, False, "recorded", 0.99, 1.0),
    (ACC, 0.95, {"unexpected": "shape"}, False, "recorded", 0.99, 1.0),
    (ACC, 0.95, scored({"accuracy": 0.5}, version="bc-v0"), False, "recorded", 0.99, 1.0),
    (RMSE, 39.0, None, True, "recorded", 40.0, 39.5),
])
def test_given_a_report_when_must_beat_stable_then_the_comparison_used_is_recorded_with_both_scores(
        gates, value, record, passed, comparison, baseline, threshold):
    metric = gates["mustBeatStable"]["metric"]
    verdict = evaluate_gates(_gates(**gates), {metric: value}, STABLE, record)
    assert verdict.passed is passed
    (result,) = verdict.results
    assert result["comparison"] == comparison and result["baselineVersion"] == "bc-v1"
    assert result["value"] == value and result["baseline"] == baseline
    assert result["threshold"] == pytest.approx(threshold) and result["margin"] == gates["mustBeatStable"]["margin"]
    assert ("rows" in result) is (comparison == "sameRows")
    assert ("message" in result) is (comparison == "recorded")  # says why it is not the same rows


@pytest.mark.parametrize("record, why", [
    (scored(reason="stable version needs input column(s) 'x' that these test rows lack"), "needs input column"),
    (scored({"accuracy": None}), "undefined on these rows"),     # scored, but the metric did not come out
    (scored({"f1_macro": 0.9}), "undefined on these rows"),      # scored, without the gate's metric
    (scored({"accuracy": "0.9"}), "undefined on these rows"),
])
def test_given_a_stable_version_the_job_could_not_score_when_must_beat_stable_then_fails_closed_with_the_reason(
        record, why):
    verdict = evaluate_gates(_gates(**ACC), {"accuracy": 0.999}, STABLE, record)
    assert not verdict.passed
    (failure,) = verdict.failures
    assert "bc-v1" in failure and why in failure
    (result,) = verdict.results
    assert result["comparison"] == "sameRows" and why in result["message"] and not result["passed"]
    assert "baseline" not in result and "threshold" not in result


def test_given_a_worse_challenger_on_the_same_rows_when_rejected_then_the_line_names_both_scores_margin_and_stable():
    verdict = evaluate_gates(_gates(**ACC), {"accuracy": 0.62}, STABLE, scored({"accuracy": 0.95}))
    assert verdict.failures == ["mustBeatStable: accuracy 0.62 does not beat stable bc-v1 (0.95, on the same 114 "
                                "test rows) by margin 0.01"]


def test_given_a_better_challenger_on_the_same_rows_when_passed_then_a_note_names_both_scores():
    verdict = evaluate_gates(_gates(**ACC), {"accuracy": 0.97}, STABLE, scored({"accuracy": 0.95}))
    assert verdict.passed and verdict.notes == ["mustBeatStable: accuracy 0.97 beats stable bc-v1 (0.95, on the same "
                                                "114 test rows) by margin 0.01"]


def test_given_no_stable_version_when_the_report_has_a_baseline_anyway_then_nothing_to_beat():
    verdict = evaluate_gates(_gates(**ACC), {"accuracy": 0.5}, Baseline("bc"), scored({"accuracy": 0.9}))
    assert verdict.passed and "no stable version" in verdict.notes[0]
    assert "comparison" not in verdict.results[0]


def test_given_a_stable_version_scored_by_an_older_job_when_recorded_fallback_then_the_message_names_both():
    verdict = evaluate_gates(_gates(**ACC), {"accuracy": 0.5}, STABLE, scored({"accuracy": 0.1}, version="bc-v0"))
    assert "bc-v0" in verdict.results[0]["message"] and "bc-v1" in verdict.results[0]["message"]
    assert "recorded at its own training" in verdict.failures[0]
