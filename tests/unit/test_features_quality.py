"""Quality checks on the raw snapshot rows, the impute policy's blanking, and the per-feature statistics."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlops_operator.api.v1alpha1.featureset import FeatureSpec
from mlops_operator.features.quality import MAX_VIOLATIONS, blank_violations, check_quality
from mlops_operator.features.stats import stats_doc
from mlops_operator.runtime.train_config import InvalidInput

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def feats(*specs: dict) -> list[FeatureSpec]:
    return [FeatureSpec.model_validate(s) for s in specs]


def test_given_values_outside_min_and_max_when_checked_then_messages_count_them_and_quote_the_extreme():
    frame = pd.DataFrame({"r": [5.0, 12.0, 28.1, np.nan, -3.0, 7.0]})
    result = check_quality(feats({"name": "r", "checks": {"min": 0, "max": 10}}), frame, NOW)
    assert result.report["violations"] == [
        {"feature": "r", "check": "min", "message": "1 of 5 values below min 0 (smallest -3)"},
        {"feature": "r", "check": "max", "message": "2 of 5 values above max 10 (largest 28.1)"},
    ]
    assert result.report["passed"] is False and result.report["checkedAt"] == "2026-03-01T12:00:05Z"
    assert result.report["rows"] == 6 and result.report["missingFraction"] == {"r": round(1 / 6, 6)}
    assert result.violating["r"].tolist() == [False, True, True, False, True, False]


def test_given_allowed_values_when_checked_then_category_text_and_numbers_compare_canonically():
    frame = pd.DataFrame({"c": ["a", "b", "zz", None, "q", "zz"], "n": [1, 2, 3, 2, None, 1], "f": [True, False, True, None, True, True]})
    result = check_quality(feats(
        {"name": "c", "dtype": "category", "transform": "onehot", "checks": {"allowedValues": ["a", "b"]}},
        {"name": "n", "dtype": "int", "checks": {"allowedValues": [1, "2"]}},
        {"name": "f", "dtype": "bool", "checks": {"allowedValues": ["true"]}},
    ), frame, NOW)
    by_feature = {v["feature"]: v["message"] for v in result.report["violations"]}
    assert by_feature == {
        "c": "3 of 5 values not in allowedValues (e.g. 'zz', 'q')",
        "n": "1 of 5 values not in allowedValues (e.g. '3')",
        "f": "1 of 5 values not in allowedValues (e.g. 'false')",
    }


def test_given_too_many_missing_values_when_checked_then_max_missing_fraction_violation():
    frame = pd.DataFrame({"x": [1.0, None, None, 4.0], "y": [1.0, None, 3.0, 4.0]})
    result = check_quality(feats({"name": "x", "checks": {"maxMissingFraction": 0.25}},
                                 {"name": "y", "checks": {"maxMissingFraction": 0.25}}), frame, NOW)
    assert result.report["violations"] == [{"feature": "x", "check": "maxMissingFraction",
                                            "message": "missing fraction 0.5 (2 of 4 values) above maxMissingFraction 0.25"}]
    assert "x" not in result.violating  # not a value-level violation: policy impute cannot repair it


def test_given_clean_data_when_checked_then_passed_with_no_violations():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    result = check_quality(feats({"name": "x", "checks": {"min": 0, "max": 5, "maxMissingFraction": 0}}), frame, NOW)
    assert result.passed and result.report["violations"] == [] and result.violating == {}


def test_given_more_than_the_bound_of_violations_when_checked_then_list_is_cut_and_total_reported():
    n = MAX_VIOLATIONS + 20
    frame = pd.DataFrame({f"x{i}": [5.0] for i in range(n)})
    result = check_quality(feats(*({"name": f"x{i}", "checks": {"max": 1}} for i in range(n))), frame, NOW)
    assert len(result.report["violations"]) == MAX_VIOLATIONS and result.report["violationsTotal"] == n


def test_given_min_on_a_category_from_an_older_crd_when_checked_then_invalid_input_names_the_feature():
    # The CRD's CEL rejects this at apply time; a spec admitted before that rule existed still fails clearly.
    from mlops_operator.api.v1alpha1.featureset import Checks

    spec = FeatureSpec.model_construct(name="c", dtype="category", transform="onehot", impute=None, boundaries=None,
                                       checks=Checks.model_validate({"min": 1}))
    with pytest.raises(InvalidInput, match="'c'.*checks.min"):
        check_quality([spec], pd.DataFrame({"c": ["a"]}), NOW)


def test_given_violations_when_blanked_then_exactly_those_values_become_missing_in_their_dtype():
    frame = pd.DataFrame({"x": [1.0, 50.0, 2.0], "n": pd.array([1, 2, 99], dtype="Int64"), "c": ["a", "bad", "b"]})
    result = check_quality(feats({"name": "x", "checks": {"max": 10}},
                                 {"name": "n", "dtype": "int", "checks": {"max": 10}},
                                 {"name": "c", "dtype": "category", "transform": "onehot", "checks": {"allowedValues": ["a", "b"]}}), frame, NOW)
    out = blank_violations(frame, result.violating)
    assert out["x"].isna().tolist() == [False, True, False]
    assert out["n"].isna().tolist() == [False, False, True] and str(out["n"].dtype) == "Int64"
    assert out["c"].tolist() == ["a", None, "b"]
    assert frame["x"][1] == 50.0  # the input frame is untouched


def test_given_numeric_and_category_features_when_stats_computed_then_counts_moments_and_top_values():
    frame = pd.DataFrame({"x": [1.0, 3.0, np.nan], "c": ["b", "a", "b"], "f": [True, False, None]})
    doc = stats_doc(feats({"name": "x"}, {"name": "c", "dtype": "category", "transform": "onehot"}, {"name": "f", "dtype": "bool"}),
                    frame, {"passed": True}, source={"builtin": "iris"})
    assert doc["rows"] == 3 and doc["quality"] == {"passed": True} and doc["source"] == {"builtin": "iris"}
    assert doc["features"]["x"] == {"dtype": "float", "count": 2, "missing": 1, "mean": 2.0, "std": 1.0,
                                    "min": 1.0, "max": 3.0}
    assert doc["features"]["c"] == {"dtype": "category", "count": 3, "missing": 0, "unique": 2,
                                    "top": [{"value": "b", "count": 2}, {"value": "a", "count": 1}]}
    assert doc["features"]["f"]["mean"] == 0.5 and doc["features"]["f"]["missing"] == 1


def test_given_an_all_missing_numeric_feature_when_stats_computed_then_moments_are_null_not_nan():
    doc = stats_doc(feats({"name": "x"}), pd.DataFrame({"x": [np.nan, np.nan]}), {})
    assert doc["features"]["x"] == {"dtype": "float", "count": 0, "missing": 2, "mean": None, "std": None,
                                    "min": None, "max": None}
