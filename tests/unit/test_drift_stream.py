"""Drift over chunks of rows: the same numbers as one pass over all rows, in memory that does not grow with rows."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from mlops_operator.drift.reference import feature_drift, reference_stats
from mlops_operator.drift.stats import categorical_psi, chi2, ks, psi
from mlops_operator.drift.stream import DriftCounts, FeatureCounts, feature_drift_chunks, row_blocks

pytestmark = pytest.mark.unit


def mixed_frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(10.0 + shift, 2.0, size=n)
    x[::37] = np.nan
    colour = rng.choice(["red", "green", "blue", "violet"], p=[0.5, 0.3, 0.15, 0.05], size=n).astype(object)
    colour[::53] = None
    return pd.DataFrame({"x": x, "count": rng.integers(0, 5, size=n), "colour": colour, "flag": rng.random(n) < 0.2})


def one_pass(reference: dict, frame: pd.DataFrame) -> dict[str, tuple]:
    """Each feature's statistics from the per-test functions on the whole column at once."""
    out = {}
    for name, profile in reference["features"].items():
        column = frame[name].to_numpy()
        if profile["kind"] == "numeric":
            values = column.astype(float)
            out[name] = (psi(profile["fractions"], profile["edges"], values),
                         ks(profile["fractions"], profile["edges"], values).statistic, None,
                         float(np.isnan(values).mean()))
        else:
            freqs, other = profile["frequencies"], profile["otherFraction"]
            missing = float(np.mean([v is None or (isinstance(v, float) and v != v) for v in column]))
            out[name] = (categorical_psi(freqs, column, other), None,
                         chi2(freqs, column, unseen_share=max(0.01, other)).statistic, missing)
    return out


@pytest.fixture(scope="module")
def reference() -> dict:
    return reference_stats(mixed_frame(np.random.default_rng(1), 4000), ["x", "count", "colour", "flag"],
                           categorical=["count"])


@pytest.mark.parametrize("chunk_rows", [1, 7, 250, 1000, 5000])
def test_given_a_frame_in_chunks_of_any_size_when_drift_is_counted_then_it_equals_one_pass_over_all_rows(
        reference, chunk_rows):
    current = mixed_frame(np.random.default_rng(2), 1000, shift=2.0)
    current.loc[:99, "colour"] = "never-seen"
    chunks = (current.iloc[i:i + chunk_rows] for i in range(0, len(current), chunk_rows))
    streamed = feature_drift_chunks(reference, chunks, list(current.columns))
    expected = one_pass(reference, current)
    assert set(streamed) == set(expected)
    for name, (psi_value, ks_value, chi2_value, missing) in expected.items():
        got = streamed[name]
        assert got.psi == pytest.approx(psi_value, rel=1e-12), name
        assert (got.ks is None) == (ks_value is None) and (ks_value is None or got.ks == pytest.approx(ks_value)), name
        assert (got.chi2 is None) == (chi2_value is None), name
        assert chi2_value is None or got.chi2 == pytest.approx(chi2_value, rel=1e-12), name
        assert got.missing_ratio == pytest.approx(missing), name
    assert streamed["x"].psi > 0.25 and streamed["colour"].chi2 > 100  # the shift and the new category are seen


def test_given_an_array_in_row_blocks_when_drift_is_counted_then_it_equals_one_call_on_the_whole_array():
    rng = np.random.default_rng(5)
    ref_rows, current = rng.normal(size=(3000, 6)), rng.normal(size=(2000, 6))
    current[:, :3] += 0.5
    current[::11, 4] = np.nan
    reference = reference_stats(ref_rows, [f"f{j}" for j in range(6)])
    whole = feature_drift_chunks(reference, [current])
    for chunk_values in (6, 600, 6 * 777, 10**9):
        assert feature_drift_chunks(reference, row_blocks(current, chunk_values)) == whole
    assert feature_drift(reference, current) == whole
    assert whole["f0"].psi > 0.1 > whole["f5"].psi and whole["f4"].missing_ratio == pytest.approx(182 / 2000)


def test_given_row_blocks_then_every_row_is_in_exactly_one_block_in_order():
    X = np.arange(23 * 4, dtype=float).reshape(23, 4)
    blocks = list(row_blocks(X, chunk_values=20))
    assert [len(b) for b in blocks] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate(blocks), X)
    frame_blocks = list(row_blocks(pd.DataFrame(X), chunk_values=20))
    assert pd.concat(frame_blocks).equals(pd.DataFrame(X))


def test_given_none_nan_and_unseen_categories_when_counted_then_only_none_and_nan_are_missing():
    counts = FeatureCounts({"kind": "categorical", "frequencies": {"a": 0.5, "b": 0.5}, "otherFraction": 0.0})
    counts.add(np.array(["a", None, float("nan"), "zzz", "b", np.float64("nan"), "a", 3.0], dtype=object))
    counts.add(["b", None])
    assert counts.values == 10 and counts.missing == 4
    assert counts.counts.tolist() == [2, 2, 2]  # a, b, then unseen ("zzz" and 3.0)
    assert counts.result().missing_ratio == pytest.approx(0.4)


def test_given_no_rows_when_drift_is_counted_then_nan_statistics_and_no_missing_ratio(reference):
    result = DriftCounts(reference).result()
    assert math.isnan(result["x"].psi) and math.isnan(result["x"].ks) and result["x"].missing_ratio == 0.0
    assert math.isnan(result["colour"].psi) and math.isnan(result["colour"].chi2)


def test_given_an_array_narrower_than_the_reference_when_added_then_value_error_names_the_shape(reference):
    with pytest.raises(ValueError, match="4 reference features"):
        DriftCounts(reference).add(np.zeros((3, 2)))


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_given_four_times_the_rows_when_drift_is_counted_in_blocks_then_peak_memory_stays_the_same():
    rng = np.random.default_rng(9)
    reference = reference_stats(rng.normal(size=(5000, 5)), [f"f{j}" for j in range(5)])
    small, large = rng.normal(size=(50_000, 5)), rng.normal(size=(200_000, 5))
    chunk = 25_000 * 5
    small_peak = peak_bytes(lambda: feature_drift_chunks(reference, row_blocks(small, chunk)))
    large_peak = peak_bytes(lambda: feature_drift_chunks(reference, row_blocks(large, chunk)))
    assert large_peak < small_peak * 1.1 + 64 * 1024, (small_peak, large_peak)
    assert large_peak < large.nbytes / 4  # a block, not the data: the large array is 8 blocks


@pytest.mark.parametrize("n_bins", [1, 2, 10, 32, 33, 200])
def test_given_few_or_many_bins_when_values_are_binned_then_counts_match_a_binary_search(n_bins):
    from mlops_operator.drift.stats import binned

    rng = np.random.default_rng(n_bins)
    values = np.concatenate([rng.integers(-3, 4, size=2000).astype(float), [np.nan] * 5, [np.inf, -np.inf]])
    edges = np.unique(np.quantile(rng.normal(size=500), np.linspace(0, 1, n_bins + 1)))
    edges = np.concatenate([edges[:-1], [0.0, 1.0], edges[-1:]]) if n_bins == 200 else edges  # ties on cut points
    edges = np.sort(edges)
    present = values[~np.isnan(values)]
    expected = np.bincount(np.searchsorted(edges[1:-1], present, side="right"), minlength=len(edges) - 1)
    counts, missing = binned(edges, values)
    assert missing == 5 and counts.sum() == present.size
    assert np.array_equal(counts, expected)
