"""The router's deterministic weighted split and shadow sampling."""

from __future__ import annotations

from collections import Counter

import pytest

from mlops_operator.runtime.route_split import PercentSampler, SmoothWeightedPicker

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("candidate_bp", [0, 100, 1000, 2500, 3333, 5000, 9000, 9950, 10000])
def test_given_weights_when_100k_picks_then_split_error_below_one_percent(candidate_bp):
    picker = SmoothWeightedPicker({"stable": 10_000 - candidate_bp, "candidate": candidate_bp})
    counts = Counter(picker.pick() for _ in range(100_000))
    expected = 100_000 * candidate_bp / 10_000
    assert abs(counts["candidate"] - expected) <= 1  # exact up to rounding; the bar is 1 % (1,000 picks)
    assert counts["stable"] + counts["candidate"] == 100_000


def test_given_ten_percent_canary_when_picked_then_one_candidate_in_every_ten_consecutive_picks():
    picker = SmoothWeightedPicker({"stable": 9000, "candidate": 1000})
    picks = [picker.pick() for _ in range(1000)]
    assert picks[:10] == ["stable"] * 5 + ["candidate"] + ["stable"] * 4  # the worked example in the docstring
    assert all(picks[i:i + 10].count("candidate") == 1 for i in range(0, 990))  # smooth: never bursts


def test_given_zero_weight_variant_when_picked_then_never_chosen():
    picker = SmoothWeightedPicker({"stable": 10_000, "candidate": 0})
    assert {picker.pick() for _ in range(1000)} == {"stable"}


def test_given_no_positive_weight_when_built_then_refused():
    with pytest.raises(ValueError):
        SmoothWeightedPicker({"stable": 0, "candidate": 0})


@pytest.mark.parametrize("basis_points", [0, 1, 250, 5000, 9999, 10000])
def test_given_mirror_percent_when_sampled_then_exact_share_evenly_spaced(basis_points):
    sampler = PercentSampler(basis_points)
    hits = [i for i in range(100_000) if sampler.sample()]
    assert len(hits) == 100_000 * basis_points // 10_000
    if len(hits) > 2:
        gaps = {b - a for a, b in zip(hits, hits[1:])}
        assert max(gaps) - min(gaps) <= 1
