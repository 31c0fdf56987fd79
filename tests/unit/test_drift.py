"""Drift math with worked examples: binning, PSI, binned KS, chi-square, reference profiles."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlops_operator.drift.reference import (
    compare_profile,
    feature_drift,
    quantile_edges,
    reference_stats,
)
from mlops_operator.drift.stats import (
    bin_counts,
    categorical_psi,
    category_counts,
    chi2,
    ks,
    psi,
    psi_from_fractions,
)

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------------- binning

def test_given_edges_when_values_binned_then_left_closed_bins_and_open_outer_bins():
    edges = [0.0, 1.0, 2.0, 3.0]  # three bins: (-inf,1) [1,2) [2,+inf)
    values = np.array([-5.0, 0.0, 0.99, 1.0, 1.5, 2.0, 3.0, 99.0, np.nan])
    assert bin_counts(edges, values).tolist() == [3, 2, 3]  # NaN not binned


def test_given_constant_column_when_edges_computed_then_single_bin_holds_everything():
    edges = quantile_edges(np.full(50, 7.0))
    assert edges.tolist() == [7.0, 7.0]
    assert bin_counts(edges, np.array([1.0, 7.0, 100.0])).tolist() == [3]


def test_given_discrete_values_when_edges_computed_then_tied_quantiles_merge():
    values = np.array([0] * 50 + [1] * 30 + [2] * 20, dtype=float)
    edges = quantile_edges(values, bins=10)
    assert edges.tolist() == [0.0, 1.0, 2.0]
    assert bin_counts(edges, values).tolist() == [50, 50]  # value 2 == max lands in the last bin


# ------------------------------------------------------------------------------------------ PSI

def test_psi_worked_example_half_half_to_ninety_ten():
    # 0.4*ln(0.9/0.5) + (-0.4)*ln(0.1/0.5) = 0.23511 + 0.64378
    assert psi_from_fractions([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.878890, abs=1e-6)


def test_psi_is_zero_for_identical_and_symmetric_in_its_arguments():
    assert psi_from_fractions([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert psi_from_fractions([0.2, 0.8], [0.6, 0.4]) == pytest.approx(psi_from_fractions([0.6, 0.4], [0.2, 0.8]))


def test_given_empty_current_bin_when_psi_then_finite_thanks_to_epsilon_floor():
    value = psi_from_fractions([0.5, 0.5], [1.0, 0.0])
    # 0.5*ln(1/0.5) + (1e-4 - 0.5)*ln(1e-4/0.5)
    assert value == pytest.approx(0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    assert math.isfinite(value)


def test_given_values_when_psi_against_edges_then_counts_become_fractions():
    edges, ref = [0.0, 1.0, 2.0], [0.5, 0.5]
    current = np.array([0.5] * 9 + [1.5] * 1)
    assert psi(ref, edges, current) == pytest.approx(0.878890, abs=1e-6)
    assert math.isnan(psi(ref, edges, np.array([np.nan])))


def test_given_same_distribution_when_psi_then_small_and_shifted_then_above_alert_threshold():
    rng = np.random.default_rng(7)
    train = rng.normal(size=5000)
    edges = quantile_edges(train)
    ref = bin_counts(edges, train) / len(train)
    assert psi(ref, edges, rng.normal(size=5000)) < 0.02
    assert psi(ref, edges, rng.normal(loc=1.0, size=5000)) > 0.25


# ------------------------------------------------------------------------------------------- KS

def test_ks_worked_example_gap_at_the_cut_point():
    result = ks([0.5, 0.5], [0.0, 1.0, 2.0], np.array([0.5] * 8 + [1.5] * 2))
    assert result.statistic == pytest.approx(0.3)
    assert 0.0 < result.pvalue < 1.0


def test_ks_of_matching_sample_is_zero_with_pvalue_one():
    result = ks([0.25, 0.25, 0.5], [0.0, 1.0, 2.0, 4.0], np.array([0.5, 1.5, 3.0, 3.5]))
    assert result.statistic == pytest.approx(0.0)
    assert result.pvalue == pytest.approx(1.0)


def test_ks_pvalue_falls_as_the_sample_grows_for_the_same_gap():
    small = ks([0.5, 0.5], [0.0, 1.0, 2.0], np.array([0.5] * 8 + [1.5] * 2))
    large = ks([0.5, 0.5], [0.0, 1.0, 2.0], np.array([0.5] * 800 + [1.5] * 200))
    assert large.statistic == pytest.approx(small.statistic)
    assert large.pvalue < 1e-6 < small.pvalue


# ------------------------------------------------------------------------------------ chi-square

def test_chi2_worked_example_thirty_seventy_against_fifty_fifty():
    result = chi2({"a": 0.5, "b": 0.5}, np.array(["a"] * 30 + ["b"] * 70))
    assert result.statistic == pytest.approx(16.0)  # (30-50)²/50 + (70-50)²/50
    assert result.pvalue == pytest.approx(6.334e-5, rel=1e-3)  # df = 1


def test_given_unseen_categories_when_counted_then_they_share_the_last_cell_and_missing_is_skipped():
    counts = category_counts(["a", "b"], np.array(["b", "z", "a", None, "y", float("nan"), "b"], dtype=object))
    assert counts.tolist() == [1, 2, 2]


def test_chi2_stray_unseen_value_is_quiet_but_a_flood_is_loud():
    ref = {"a": 0.5, "b": 0.5}
    stray = chi2(ref, np.array(["a"] * 50 + ["b"] * 49 + ["new"]))
    flood = chi2(ref, np.array(["a"] * 30 + ["b"] * 30 + ["new"] * 40))
    assert stray.pvalue > 0.5
    assert flood.pvalue < 1e-10


def test_categorical_psi_counts_unseen_values_against_other_fraction():
    ref = {"a": 0.5, "b": 0.5}
    assert categorical_psi(ref, np.array(["a", "b"] * 50)) == pytest.approx(0.0, abs=1e-3)
    assert categorical_psi(ref, np.array(["a"] * 90 + ["b"] * 10)) == pytest.approx(0.878890, abs=1e-2)


# ---------------------------------------------------------------------------- reference profile

def _frame(rng: np.random.Generator, n: int = 1000) -> pd.DataFrame:
    x = rng.normal(10.0, 2.0, size=n)
    x[:10] = np.nan
    return pd.DataFrame({
        "x": x,
        "count": rng.integers(0, 5, size=n),
        "colour": rng.choice(["red", "green", "blue"], p=[0.6, 0.3, 0.1], size=n),
        "flag": rng.random(n) < 0.2,
    })


def test_given_training_frame_when_profiled_then_numeric_and_categorical_stats_are_recorded():
    ref = reference_stats(_frame(np.random.default_rng(1)), ["x", "count", "colour", "flag"],
                          predictions=np.array([0, 1] * 500), predictions_categorical=True)
    x = ref["features"]["x"]
    assert (x["kind"], x["dtype"]) == ("numeric", "float")
    assert len(x["edges"]) == 11 and len(x["fractions"]) == 10
    assert sum(x["fractions"]) == pytest.approx(1.0)
    assert all(f == pytest.approx(0.1, abs=0.01) for f in x["fractions"])
    assert x["missingFraction"] == pytest.approx(0.01)
    assert x["mean"] == pytest.approx(10.0, abs=0.2) and x["std"] == pytest.approx(2.0, abs=0.2)
    assert x["min"] == x["edges"][0] and x["max"] == x["edges"][-1]
    assert ref["features"]["count"]["dtype"] == "int"
    colour = ref["features"]["colour"]
    assert colour["kind"] == "categorical"
    assert list(colour["frequencies"]) == ["red", "green", "blue"]  # most frequent first
    assert colour["frequencies"]["red"] == pytest.approx(0.6, abs=0.05)
    assert ref["features"]["flag"]["kind"] == "categorical"
    assert ref["prediction"]["frequencies"] == {"0": 0.5, "1": 0.5}
    assert ref["rows"] == 1000
    json.dumps(ref, allow_nan=False)  # storable as reference.json


def test_given_numpy_array_when_profiled_then_columns_are_taken_by_position():
    X = np.column_stack([np.arange(100.0), np.ones(100)])
    ref = reference_stats(X, ["a", "b"])
    assert ref["features"]["a"]["min"] == 0.0 and ref["features"]["a"]["max"] == 99.0
    assert ref["features"]["b"]["fractions"] == [1.0]
    assert "prediction" not in ref


def test_given_many_categories_when_profiled_then_tail_is_summed_in_other_fraction():
    values = np.array([f"c{i}" for i in range(200)] * 2, dtype=object)
    from mlops_operator.drift.reference import categorical_profile

    profile = categorical_profile(values, max_categories=50)
    assert len(profile["frequencies"]) == 50
    assert profile["otherFraction"] == pytest.approx(0.75)


def test_given_reference_when_live_data_shifts_then_only_the_shifted_feature_drifts():
    rng = np.random.default_rng(3)
    ref = reference_stats(_frame(rng, 3000), ["x", "count", "colour", "flag"])
    live = _frame(rng, 2000)
    live["x"] = live["x"] + 4.0
    live.loc[:999, "colour"] = "purple"
    drift = feature_drift(ref, live)
    assert drift["x"].psi > 0.25 and drift["x"].ks > 0.3
    assert drift["count"].psi < 0.05
    assert drift["colour"].psi > 0.25 and drift["colour"].chi2 > 100
    assert drift["flag"].psi < 0.05 and drift["flag"].chi2 is not None
    assert drift["x"].missing_ratio == pytest.approx(0.005)


def test_given_live_frame_missing_a_feature_when_compared_then_only_present_features_reported():
    ref = reference_stats(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 2.0]}), ["a", "b"])
    assert set(feature_drift(ref, pd.DataFrame({"a": [1.0]}))) == {"a"}


def test_given_all_missing_training_column_when_compared_then_nan_not_crash():
    ref = reference_stats(pd.DataFrame({"a": [np.nan, np.nan]}), ["a"])
    assert ref["features"]["a"]["edges"] == [] and ref["features"]["a"]["missingFraction"] == 1.0
    result = compare_profile(ref["features"]["a"], np.array([1.0, 2.0]))
    assert math.isnan(result.psi)
