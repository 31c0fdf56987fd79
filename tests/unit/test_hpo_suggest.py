"""Suggestions rebuilt from the recorded history: deterministic, grid without repeats, ranges respected."""

from __future__ import annotations

import collections
import itertools
import json
import math
import statistics

import pytest

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearchSpec
from mlops_operator.logic import hpo_suggest
from mlops_operator.logic.hpo_suggest import Past, grid_size, space_problems, startup_trials, suggest

pytestmark = pytest.mark.unit

SEED = hpo_suggest.search_seed("bc-search")
MIXED = {"n_estimators": {"values": [50, 100, 200]}, "max_depth": {"min": 2, "max": 6, "type": "int"},
         "learning_rate": {"min": 0.01, "max": 0.3, "scale": "log"}}


def spec(space: dict | None = None, algorithm: str = "random", **extra) -> HyperparameterSearchSpec:
    return HyperparameterSearchSpec.model_validate({
        "model": "breast-cancer", "algorithm": algorithm, "space": space or MIXED,
        "template": {"training": {"dataset": {"builtin": "breast_cancer"},
                                 "estimator": "sklearn.ensemble.GradientBoostingClassifier"}},
        "objective": {"metric": "roc_auc"}, **extra})


def run(s: HyperparameterSearchSpec, n: int, value=lambda i, p: 0.5 + 0.01 * i, seed: int = SEED) -> list[dict]:
    """n trials one after the other, each suggested from the history of the ones before."""
    history: list[Past] = []
    for i in range(n):
        params = suggest(s, history, seed)
        history.append(Past(params, hpo_suggest.COMPLETE, value(i, params)))
    return [dict(h.parameters) for h in history]


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_given_the_same_history_when_suggested_again_then_the_same_parameters(algorithm):
    s = spec(algorithm=algorithm, maxTrials=8)
    first = run(s, 7)
    again = run(s, 7)  # a restarted operator rebuilds every study from status alone
    assert first == again
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 7  # each trial has its own random stream


def test_given_a_different_search_seed_then_the_trials_differ():
    assert run(spec(), 3, seed=1) != run(spec(), 3, seed=2)


def test_given_running_trials_in_the_history_then_the_next_one_still_gets_new_parameters():
    s = spec(maxTrials=8)
    a = suggest(s, [], SEED)
    b = suggest(s, [Past(a, hpo_suggest.RUNNING)], SEED)
    assert a != b


def test_given_a_grid_when_walked_then_every_point_once_in_a_seeded_order():
    space = {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}, "c": {"values": [True]}}
    s = spec(space, algorithm="grid", maxTrials=20)
    assert grid_size(s.space) == 6
    points = run(s, 6)
    expected = [dict(zip(("a", "b", "c"), combo)) for combo in itertools.product([1, 2, 3], ["x", "y"], [True])]
    assert sorted(map(json.dumps, points)) == sorted(map(json.dumps, expected))
    assert run(s, 6) == points and run(s, 6, seed=SEED + 1) != points


def test_given_a_grid_with_failed_and_running_points_then_they_are_not_repeated():
    s = spec({"a": {"values": [1, 2, 3, 4]}}, algorithm="grid")
    history = [Past({"a": 1}, hpo_suggest.FAILED), Past({"a": 2}, hpo_suggest.RUNNING)]
    first, second = suggest(s, history[:0], SEED), suggest(s, history[:1], SEED)
    history = [Past(first, hpo_suggest.FAILED), Past(second, hpo_suggest.RUNNING)]
    third = suggest(s, history, SEED)
    assert third not in (first, second)


def test_given_a_range_then_grid_size_is_none():
    assert grid_size(spec().space) is None


def test_given_a_log_range_then_samples_stay_in_range_and_are_log_uniform():
    s = spec({"alpha": {"min": 0.001, "max": 10.0, "scale": "log"}}, maxTrials=200)
    values = [p["alpha"] for p in run(s, 150)]
    assert all(0.001 <= v <= 10.0 for v in values)
    # log-uniform: the median sits near the geometric middle (0.1), far below the arithmetic one (5.0)
    assert 0.02 < statistics.median(values) < 0.5
    assert sum(v < 0.01 for v in values) > 20  # a uniform draw would give ~0.1% of them below 0.01


def test_given_int_type_then_integers_within_the_integer_bounds():
    s = spec({"max_depth": {"min": 1.5, "max": 4.5, "type": "int"},
              "leaf": {"min": 1, "max": 64, "type": "int", "scale": "log"}}, maxTrials=100)
    points = run(s, 60)
    assert all(type(p["max_depth"]) is int and 2 <= p["max_depth"] <= 4 for p in points)
    assert {p["max_depth"] for p in points} == {2, 3, 4}
    assert all(type(p["leaf"]) is int and 1 <= p["leaf"] <= 64 for p in points)


def test_given_floats_then_rounded_to_six_significant_digits():
    for p in run(spec(), 10):
        assert p["learning_rate"] == float(f"{p['learning_rate']:.6g}")


def test_given_values_of_any_json_type_then_returned_as_written_and_kept_distinct():
    choices = [1, True, 1.0, None, "auto", {"k": [1, 2]}]
    s = spec({"v": {"values": choices}}, algorithm="grid")
    got = [p["v"] for p in run(s, len(choices))]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, choices))
    assert {type(v) for v in got} == {int, bool, float, type(None), str, dict}


def test_given_a_recorded_trial_outside_the_space_then_it_is_skipped_not_fatal():
    s = spec({"a": {"values": [1, 2, 3]}}, algorithm="grid")
    first = suggest(s, [], SEED)
    stray = Past({"a": 99}, hpo_suggest.COMPLETE, 0.9)  # recorded before an (unsupported) space edit
    nxt = suggest(s, [stray], SEED)
    assert nxt["a"] in (1, 2, 3)
    assert nxt == suggest(s, [Past(first, hpo_suggest.COMPLETE, 0.9)], SEED)  # numbering kept aligned


def test_given_rejected_trials_of_a_region_then_bayesian_steers_away_from_it():
    s = spec({"k": {"values": ["a", "b", "c", "d"]}, "x": {"min": 0.0, "max": 1.0}}, algorithm="bayesian",
             maxTrials=20)

    def history(rejected: bool) -> list[Past]:
        out = []
        for i in range(10):
            k = "abcd"[i % 4]
            outcome = hpo_suggest.INFEASIBLE if (rejected and k == "a") else hpo_suggest.COMPLETE
            out.append(Past({"k": k, "x": 0.1 * i}, outcome, 0.99 if k == "a" else 0.5))
        return out

    def picks(rejected: bool) -> collections.Counter:
        return collections.Counter(suggest(s, history(rejected), seed)["k"] for seed in range(20))

    assert picks(rejected=False)["a"] >= 15  # the best region is exploited...
    assert picks(rejected=True)["a"] <= 3    # ...unless its versions were rejected by their gates


def test_given_an_int_range_without_integers_then_a_space_problem():
    s = spec({"d": {"min": 2.2, "max": 2.8, "type": "int"}, "ok": {"min": 0.5, "max": 3.0, "type": "int"}})
    assert space_problems(s.space) == ["spec.space.d: no usable integer in [2.2, 2.8]"]
    assert space_problems(spec().space) == []


@pytest.mark.parametrize("max_trials, expected", [(1, 2), (8, 4), (20, 10), (200, 10)])
def test_given_a_budget_then_startup_trials_are_half_of_it_within_two_and_ten(max_trials, expected):
    assert startup_trials(max_trials) == expected


def test_given_a_nan_value_recorded_as_complete_then_treated_as_failed():
    s = spec(algorithm="bayesian")
    history = [Past(p, hpo_suggest.COMPLETE, math.nan if i == 0 else 0.7) for i, p in enumerate(run(s, 3))]
    as_failed = [Past(history[0].parameters, hpo_suggest.FAILED), *history[1:]]
    assert suggest(s, history, SEED) == suggest(s, as_failed, SEED)
