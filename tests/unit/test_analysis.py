"""Analysis verdicts: only a finite in-bounds value on enough samples passes; everything else holds or fails."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.v1alpha1.modeldeployment import Analysis
from mlops_operator.logic import analysis
from mlops_operator.logic.analysis import Check, MetricResult, Outcome

pytestmark = pytest.mark.unit

NAN, INF = float("nan"), float("inf")
ERR = Check("error-rate", builtin="errorRate", max=0.01)
ACC = Check("acc", query="q", min=0.9)
BAND = Check("band", query="q", min=0.1, max=0.2)


@pytest.mark.parametrize("check, value, samples, outcome", [
    (ERR, 0.0, 100, Outcome.PASSED),
    (ERR, 0.01, 100, Outcome.PASSED),          # bounds are inclusive
    (ERR, 0.0100001, 100, Outcome.FAILED),
    (ACC, 0.95, 100, Outcome.PASSED),
    (ACC, 0.89, 100, Outcome.FAILED),
    (BAND, 0.15, 100, Outcome.PASSED),
    (BAND, 0.05, 100, Outcome.FAILED),
    (BAND, 0.25, 100, Outcome.FAILED),
    (ERR, None, 100, Outcome.NO_DATA),         # empty result
    (ERR, NAN, 100, Outcome.NO_DATA),          # 0/0: no traffic
    (ERR, INF, 100, Outcome.FAILED),           # beyond the largest bucket
    (ACC, INF, 100, Outcome.FAILED),           # +Inf never passes a min-only bound either
    (ACC, -INF, 100, Outcome.FAILED),
    (ERR, 0.0, 49, Outcome.NO_DATA),           # below minSamples
    (ERR, 0.0, None, Outcome.NO_DATA),         # sample count unknown
    (ERR, NAN, 10, Outcome.NO_DATA),
])
def test_given_a_measurement_when_judged_then_only_finite_in_bounds_values_on_enough_samples_pass(check, value, samples, outcome):
    verdict = analysis.judge(check, MetricResult(check.name, value, samples), min_samples=50)
    assert verdict.outcome is outcome
    assert verdict.passed is (outcome is Outcome.PASSED)


def test_given_a_query_error_when_judged_then_it_is_an_error_with_the_reason():
    verdict = analysis.judge(ERR, MetricResult("error-rate", None, None, "connection refused"), 50)
    assert verdict.outcome is Outcome.ERROR and verdict.message == "connection refused"


def test_given_a_check_without_result_when_evaluated_then_it_is_an_error_not_a_pass():
    run = analysis.evaluate([ERR, ACC], [MetricResult("error-rate", 0.0, 100)], 50)
    assert [c.outcome for c in run.checks] == [Outcome.PASSED, Outcome.ERROR]
    assert run.outcome is Outcome.ERROR


def test_given_no_checks_when_evaluated_then_the_run_does_not_pass():
    assert analysis.RunVerdict(()).outcome is Outcome.ERROR


@pytest.mark.parametrize("outcomes, expected", [
    ([Outcome.PASSED, Outcome.PASSED], Outcome.PASSED),
    ([Outcome.PASSED, Outcome.NO_DATA], Outcome.NO_DATA),
    ([Outcome.NO_DATA, Outcome.ERROR], Outcome.ERROR),
    ([Outcome.ERROR, Outcome.FAILED, Outcome.NO_DATA], Outcome.FAILED),
])
def test_given_mixed_checks_when_combined_then_the_worst_outcome_wins(outcomes, expected):
    run = analysis.RunVerdict(tuple(analysis.CheckVerdict(f"c{i}", o, None, None, "") for i, o in enumerate(outcomes)))
    assert run.outcome is expected


@pytest.mark.parametrize("outcome, on_no_data, carries_traffic, counts", [
    (Outcome.FAILED, "hold", False, True),
    (Outcome.ERROR, "hold", True, True),       # Prometheus down mid-canary: counts toward the limit
    (Outcome.ERROR, "hold", False, False),     # ... but before traffic moved it only holds
    (Outcome.NO_DATA, "hold", True, False),
    (Outcome.NO_DATA, "fail", True, True),
    (Outcome.PASSED, "fail", True, False),
])
def test_given_a_run_outcome_when_counting_failures_then_on_no_data_and_traffic_decide(outcome, on_no_data, carries_traffic, counts):
    run = analysis.RunVerdict((analysis.CheckVerdict("c", outcome, None, None, ""),))
    assert run.counts_as_failure(on_no_data, carries_traffic) is counts


def test_given_analysis_without_metrics_when_checks_are_built_then_error_rate_and_latency_defaults_apply():
    checks = analysis.checks_for(Analysis())
    assert [(c.name, c.builtin, c.max) for c in checks] == [("error-rate", "errorRate", 0.01),
                                                            ("latency-p99", "latencyP99Seconds", 0.25)]


def test_given_metrics_in_spec_when_checks_are_built_then_they_are_taken_as_written():
    spec = Analysis.model_validate({"metrics": [{"name": "acc", "query": "sum(x{model=\"{{model}}\"})", "min": 0.9}]})
    assert analysis.checks_for(spec) == (Check("acc", None, 'sum(x{model="{{model}}"})', 0.9, None),)
    assert analysis.agreement_check(0.95) == Check("shadow-agreement", "agreement", None, 0.95, None)


def test_given_a_query_template_when_rendered_then_placeholders_are_substituted():
    q = 'rate(x{namespace="{{namespace}}",model="{{model}}",version="{{version}}"}[1m])'
    assert analysis.render_query(q, namespace="ns", model="bc", version="v7") == \
        'rate(x{namespace="ns",model="bc",version="v7"}[1m])'


def test_given_recorded_entries_when_reading_the_latest_run_then_all_its_checks_must_have_passed():
    t1 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    t2 = t1 + timedelta(seconds=30)
    ok = analysis.RunVerdict((analysis.CheckVerdict("a", Outcome.PASSED, 0.0, 100, "ok"),
                              analysis.CheckVerdict("b", Outcome.PASSED, 0.1, 100, "ok")))
    bad = analysis.RunVerdict((analysis.CheckVerdict("a", Outcome.PASSED, 0.0, 100, "ok"),
                               analysis.CheckVerdict("b", Outcome.NO_DATA, None, 3, "too few")))
    entries = analysis.run_entries(ok, t1, timedelta(seconds=30)) + analysis.run_entries(bad, t2, timedelta(seconds=30))
    assert analysis.latest_run(entries) == analysis.LatestRun(t2, False)
    assert analysis.latest_run(entries[:2]) == analysis.LatestRun(t1, True)
    assert analysis.latest_run([]) is None
    assert entries[3]["message"].startswith("[noData, window 30s]") and "value" not in entries[3]
    assert entries[0] == {"at": "2025-01-01T12:00:00Z", "metric": "a", "passed": True, "value": 0.0,
                          "samples": 100, "message": "[passed, window 30s] ok"}
