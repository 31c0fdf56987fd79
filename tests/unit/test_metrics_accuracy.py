"""`accuracy` (classifiers) and `mae` (regression models) as builtin analysis metrics: accepted in the spec,
measured by both providers with the labelled rows as their samples (Prometheus: the servers' feedback counters;
builtin: the routers' feedback counters)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from pydantic import ValidationError
from prometheus_client import CollectorRegistry, Counter

from mlops_operator.api.v1alpha1.modeldeployment import AnalysisMetric, BuiltinMetric
from mlops_operator.logic.analysis import Check, Outcome, checks_for, evaluate
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricsError, Target
from mlops_operator.providers.metrics.builtin import BuiltinProvider
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from tests.unit.test_metrics_provider_builtin import Clock, RouterPod
from tests.unit.test_metrics_provider_prometheus import prom, vector  # noqa: F401 (prom: the fake Prometheus fixture)

pytestmark = pytest.mark.unit

CANDIDATE = Target("team-a", "bc", "breast-cancer", "v2", "candidate")
WINDOW = timedelta(seconds=30)
ACCURACY = Check("accuracy", builtin="accuracy", min=0.9)
MAE = Check("mae", builtin="mae", max=30.0)


def test_given_an_analysis_metric_when_builtin_is_accuracy_then_the_spec_accepts_it_as_a_check():
    metric = AnalysisMetric.model_validate({"name": "accuracy", "builtin": "accuracy", "min": 0.9})
    assert metric.builtin == BuiltinMetric.ACCURACY == "accuracy"
    assert checks_for({"metrics": [metric]}) == (ACCURACY,)
    with pytest.raises(ValidationError):  # only the builtins the providers can measure
        AnalysisMetric.model_validate({"name": "rmse", "builtin": "rmse", "max": 3})


def test_given_prometheus_when_accuracy_is_written_then_feedback_counters_of_the_version_over_the_window():
    provider = PrometheusProvider("http://prom:9090")
    sel = '{namespace="team-a",model="breast-cancer",version="v2"}'
    assert provider.builtin_query("accuracy", CANDIDATE, WINDOW) == (
        f"sum(increase(mlops_feedback_correct_total{sel}[30s])) / sum(increase(mlops_feedback_rows_total{sel}[30s]))")
    assert provider.builtin_query("labelledRows", CANDIDATE, WINDOW) == f"sum(increase(mlops_feedback_rows_total{sel}[30s]))"


async def test_given_accuracy_and_error_rate_when_measured_then_accuracy_samples_are_labelled_rows_not_requests(prom):
    def answer(query: str):
        if query.startswith("sum(increase(mlops_feedback_correct_total"):
            return 200, vector("0.8")
        if "mlops_feedback_rows_total" in query:
            return 200, vector("120")
        if "increase(mlops_requests_total" in query:
            return 200, vector("5000")
        return 200, vector("0.001")
    prom.answer = answer
    checks = [Check("error-rate", builtin="errorRate", max=0.01), ACCURACY]
    results = await measure(PrometheusProvider(prom.url), checks, CANDIDATE, WINDOW)
    assert [(r.name, r.value, r.samples, r.error) for r in results] == [
        ("error-rate", 0.001, 5000, None), ("accuracy", 0.8, 120, None)]
    verdict = evaluate(checks, results, min_samples=100)
    assert [c.outcome for c in verdict.checks] == [Outcome.PASSED, Outcome.FAILED]


async def test_given_few_labelled_rows_when_judged_then_accuracy_is_no_data_however_many_requests(prom):
    prom.answer = lambda q: (200, vector("1" if "correct" in q else "12"))
    results = await measure(PrometheusProvider(prom.url), [ACCURACY], CANDIDATE, WINDOW)
    assert results[0].samples == 12
    assert evaluate([ACCURACY], results, min_samples=50).checks[0].outcome is Outcome.NO_DATA


# ------------------------------------------------------------------------------------------ builtin provider
class FeedbackRouterPod(RouterPod):
    def fresh(self) -> None:
        super().fresh()
        self.rows = Counter("mlops_router_feedback_rows", "", ("variant",), registry=self.registry)
        self.correct = Counter("mlops_router_feedback_correct", "", ("variant",), registry=self.registry)
        self.absolute_error = Counter("mlops_router_feedback_absolute_error", "", ("variant",), registry=self.registry)

    def label(self, variant: str, rows: int, correct: int | None, absolute_error: float | None = None) -> None:
        self.rows.labels(variant).inc(rows)
        if correct is not None:
            self.correct.labels(variant).inc(correct)
        if absolute_error is not None:
            self.absolute_error.labels(variant).inc(absolute_error)


@pytest.fixture()
def pods():
    made = [FeedbackRouterPod(), FeedbackRouterPod()]
    yield made
    for pod in made:
        pod.close()


def builtin(pods, clock: Clock) -> BuiltinProvider:
    async def targets() -> list[str]:
        return [p.url for p in pods]
    return BuiltinProvider(targets, clock=clock, timeout=1.0)


async def test_given_labelled_rows_on_two_routers_when_accuracy_is_asked_then_the_window_ratio_over_both(pods):
    clock = Clock()
    provider = builtin(pods, clock)
    pods[0].label("candidate", 50, 50)  # before the window: not counted
    pods[0].label("stable", 10, 0)
    await provider.scrape()
    clock.t += 30
    pods[0].label("candidate", 60, 54)
    pods[1].label("candidate", 40, 36)
    pods[1].label("stable", 100, 10)   # another variant: not counted
    (result,) = await measure(provider, [ACCURACY], CANDIDATE, WINDOW)
    assert (result.value, result.samples, result.error) == (0.9, 100, None)


async def test_given_a_regression_model_or_no_feedback_when_accuracy_is_asked_then_no_data_not_zero(pods):
    clock = Clock()
    provider = builtin(pods, clock)
    await provider.scrape()
    clock.t += 30
    (nothing,) = await measure(provider, [ACCURACY], CANDIDATE, WINDOW)
    pods[0].label("candidate", 25, None)  # a regressor's server reports rows, never correct ones
    clock.t += 30
    (regression,) = await measure(provider, [ACCURACY], CANDIDATE, WINDOW)
    assert (nothing.value, nothing.samples) == (None, 0)
    assert (regression.value, regression.samples) == (None, 25)
    assert evaluate([ACCURACY], [regression], min_samples=1).checks[0].outcome is Outcome.NO_DATA


async def test_given_no_labels_in_the_window_when_accuracy_is_asked_then_nan_is_no_data(pods):
    clock = Clock()
    provider = builtin(pods, clock)
    pods[0].label("candidate", 10, 9)
    await provider.scrape()
    clock.t += 30
    value = await provider.run_query(provider.builtin_query("accuracy", CANDIDATE, WINDOW))
    assert math.isnan(value)


async def test_given_the_builtin_provider_when_accuracy_lacks_a_window_then_it_is_refused(pods):
    provider = builtin(pods, Clock())
    with pytest.raises(MetricsError):
        await provider.run_query('accuracy{variant="candidate"}')


# ------------------------------------------------------------------------------------------ mae (regression)
def test_given_an_analysis_metric_when_builtin_is_mae_then_the_spec_accepts_it_as_a_check():
    metric = AnalysisMetric.model_validate({"name": "mae", "builtin": "mae", "max": 30})
    assert metric.builtin == BuiltinMetric.MAE == "mae"
    assert checks_for({"metrics": [metric]}) == (MAE,)


def test_given_prometheus_when_mae_is_written_then_absolute_error_per_labelled_row_of_the_version_over_the_window():
    sel = '{namespace="team-a",model="breast-cancer",version="v2"}'
    assert PrometheusProvider("http://prom:9090").builtin_query("mae", CANDIDATE, WINDOW) == (
        f"sum(increase(mlops_feedback_absolute_error_total{sel}[30s]))"
        f" / sum(increase(mlops_feedback_rows_total{sel}[30s]))")


@pytest.mark.parametrize(("mae", "outcome"), [("12.5", Outcome.PASSED), ("45", Outcome.FAILED)])
async def test_given_mae_when_measured_then_its_samples_are_labelled_rows_and_max_judges_it(prom, mae, outcome):
    prom.answer = lambda q: (200, vector(mae if q.startswith("sum(increase(mlops_feedback_absolute_error_total")
                                         else "80" if "mlops_feedback_rows_total" in q else "5000"))
    (result,) = await measure(PrometheusProvider(prom.url), [MAE], CANDIDATE, WINDOW)
    assert (result.value, result.samples, result.error) == (float(mae), 80, None)
    assert evaluate([MAE], [result], min_samples=50).checks[0].outcome is outcome


async def test_given_labelled_rows_on_two_routers_when_mae_is_asked_then_absolute_error_per_row_over_both(pods):
    clock = Clock()
    provider = builtin(pods, clock)
    pods[0].label("candidate", 10, None, 1000.0)  # before the window: not counted
    await provider.scrape()
    clock.t += 30
    pods[0].label("candidate", 30, None, 450.0)
    pods[1].label("candidate", 20, None, 350.0)
    pods[1].label("stable", 20, None, 9000.0)   # another variant: not counted
    (result,) = await measure(provider, [MAE], CANDIDATE, WINDOW)
    assert (result.value, result.samples, result.error) == (16.0, 50, None)


async def test_given_a_classifier_when_mae_is_asked_then_no_data_not_zero(pods):
    clock = Clock()
    provider = builtin(pods, clock)
    await provider.scrape()
    clock.t += 30
    pods[0].label("candidate", 25, 20)  # a classifier's server reports correct rows, never absolute errors
    (result,) = await measure(provider, [MAE], CANDIDATE, WINDOW)
    assert (result.value, result.samples) == (None, 25)
    assert evaluate([MAE], [result], min_samples=1).checks[0].outcome is Outcome.NO_DATA
