"""The fitted feature transform: fitted once per snapshot, stored as JSON, applied identically later."""

from __future__ import annotations

import io
import json
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.impute import KNNImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.features.dtypes import FeatureValueError
from mlops_operator.features.transform import (
    FORMAT,
    KNN_MAX_SAMPLE,
    FeatureTransformer,
    fit_transform_doc,
)
from mlops_operator.runtime.train_config import InvalidInput

pytestmark = pytest.mark.unit


def spec_of(*features: dict, **extra) -> FeatureSetSpec:
    return FeatureSetSpec.model_validate({"source": {"builtin": "iris"}, "features": list(features) or None, **extra})


def fitted(frame: pd.DataFrame, *features: dict, **extra) -> FeatureTransformer:
    return FeatureTransformer(fit_transform_doc(spec_of(*features, **extra), frame, feature_set="fs", version="v1"))


def feature(doc: dict, name: str) -> dict:
    return next(f for f in doc["features"] if f["name"] == name)


MIXED = pd.DataFrame({
    "a": [1.0, np.nan, 3.0, 4.0, 10.0],
    "b": [1, 2, 2, None, 7],
    "c": ["x", None, "y", "x", "z"],
    "d": [-1.0, 5.0, 10.0, np.nan, 12.0],
    "e": [True, None, False, True, True],
    "f": [0.0, 1.0, np.nan, 3.0, 0.5],
    "label": [0, 1, 0, 1, 1],
})
MIXED_FEATURES = (
    {"name": "a", "transform": "standardize", "impute": {"strategy": "knn"}},
    {"name": "b", "dtype": "int", "transform": "onehot"},
    {"name": "c", "dtype": "category", "transform": "onehot", "impute": {"strategy": "missing_category"}},
    {"name": "d", "transform": "bucketize", "boundaries": [0, 10], "impute": {"strategy": "median"}},
    {"name": "e", "dtype": "bool", "impute": {"strategy": "most_frequent"}},
    {"name": "f", "transform": "log1p", "impute": {"strategy": "constant", "value": "0"}},
)


# --- the stored document and its round trips ----------------------------------------------------------

def test_given_a_fitted_doc_when_dumped_to_json_and_pickled_then_every_copy_transforms_identically():
    doc = fit_transform_doc(spec_of(*MIXED_FEATURES, target="label"), MIXED, feature_set="fs", version="v3",
                            feature_set_uid="uid-1")
    original = FeatureTransformer(doc).transform(MIXED)
    from_json = FeatureTransformer(json.loads(json.dumps(doc, allow_nan=False)))
    buf = io.BytesIO()
    joblib.dump(from_json, buf)
    buf.seek(0)
    from_joblib = joblib.load(buf)
    from_pickle = pickle.loads(pickle.dumps(FeatureTransformer(doc)))

    for copy in (from_json, from_joblib, from_pickle):
        np.testing.assert_array_equal(copy.transform(MIXED), original)
    assert original.dtype == np.float64 and original.shape == (5, len(doc["outputColumns"]))
    assert doc["format"] == FORMAT and doc["featureSetUid"] == "uid-1" and doc["target"] == "label"
    assert doc["inputColumns"] == ["a", "b", "c", "d", "e", "f"]


def test_given_the_same_rows_when_fitted_and_transformed_twice_then_doc_and_output_are_identical():
    doc1 = fit_transform_doc(spec_of(*MIXED_FEATURES), MIXED, feature_set="fs", version="v1")
    doc2 = fit_transform_doc(spec_of(*MIXED_FEATURES), MIXED, feature_set="fs", version="v1")
    assert json.dumps(doc1) == json.dumps(doc2)
    t = FeatureTransformer(doc1)
    np.testing.assert_array_equal(t.transform(MIXED), t.transform(MIXED.copy()))


def test_given_a_2d_array_in_input_column_order_when_transformed_then_same_as_the_frame():
    t = fitted(MIXED, *MIXED_FEATURES)
    rows = MIXED[t.input_columns].to_numpy(dtype=object)
    np.testing.assert_array_equal(t.transform(rows), t.transform(MIXED))
    with pytest.raises(ValueError, match="6 columns"):
        t.transform(rows[:, :3])


def test_given_a_frame_missing_a_feature_column_when_transformed_then_value_error_names_it():
    t = fitted(MIXED, *MIXED_FEATURES)
    with pytest.raises(ValueError, match="'c'"):
        t.transform(MIXED.drop(columns=["c"]))


def test_given_text_in_a_float_feature_when_transformed_then_error_names_the_feature():
    t = fitted(MIXED, {"name": "a"})
    with pytest.raises(FeatureValueError, match="'a'.*'abc'"):
        t.transform(pd.DataFrame({"a": ["1.5", "abc"]}))
    assert isinstance(FeatureValueError("x"), InvalidInput) and isinstance(FeatureValueError("x"), ValueError)


def test_given_a_transformer_in_a_pipeline_when_pickled_then_raw_rows_with_nulls_predict_the_same():
    spec = (MIXED_FEATURES[0], MIXED_FEATURES[2], MIXED_FEATURES[3])
    pipe = Pipeline([("features", fitted(MIXED, *spec)), ("model", LogisticRegression())])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not fitted" or feature-name warnings from sklearn
        pipe.fit(MIXED, MIXED["label"])
        raw = pd.DataFrame([{"a": None, "c": "never-seen", "d": None}, {"a": 2.0, "c": "x", "d": 11}])
        before = pipe.predict_proba(raw)
        after = pickle.loads(pickle.dumps(pipe)).predict_proba(raw)
    np.testing.assert_array_equal(before, after)
    assert list(pipe.feature_names_in_) == ["a", "c", "d"]
    assert repr(pipe[0]) == "FeatureTransformer(featureSet='fs', version='v1', inputs=3, outputs=6)"


def test_given_no_features_in_spec_when_fitted_then_every_other_column_is_a_float_feature_with_no_transform():
    frame = pd.DataFrame({"id": [1, 2], "x": [1.5, 2.5], "y": [3, 4], "ts": ["t1", "t2"], "label": [0, 1]})
    spec = FeatureSetSpec.model_validate({"source": {"builtin": "iris"}, "entityKey": "id", "timestampColumn": "ts",
                                         "target": "label"})
    doc = fit_transform_doc(spec, frame, feature_set="fs", version="v1")
    assert doc["inputColumns"] == ["x", "y"] and doc["outputColumns"] == ["x", "y"]
    np.testing.assert_array_equal(FeatureTransformer(doc).transform(frame), [[1.5, 3.0], [2.5, 4.0]])


def test_given_a_snapshot_frame_with_the_row_number_column_when_fitted_without_features_then_it_is_no_feature():
    frame = pd.DataFrame({"__row__": [0, 1], "x": [1.5, 2.5], "label": [0, 1]})
    doc = fit_transform_doc(spec_of(target="label"), frame, feature_set="fs", version="v1")
    assert doc["inputColumns"] == ["x"] and doc["entityKey"] is None


# --- transforms ----------------------------------------------------------------------------------------

def test_given_standardize_when_fitted_then_population_mean_and_std_and_constant_column_keeps_scale_1():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 6.0], "k": [5.0, 5.0, 5.0, 5.0]})
    t = fitted(frame, {"name": "x", "transform": "standardize"}, {"name": "k", "transform": "standardize"})
    out = t.transform(frame)
    np.testing.assert_allclose(out[:, 0], (frame["x"] - 3.0) / np.std([1, 2, 3, 6]))
    assert feature(t.doc, "k")["transform"]["scale"] == 1.0
    np.testing.assert_array_equal(out[:, 1], 0.0)


def test_given_minmax_when_fitted_then_range_maps_to_0_1_and_a_constant_column_to_0():
    frame = pd.DataFrame({"x": [2.0, 4.0, 6.0], "k": [7.0, 7.0, 7.0]})
    out = fitted(frame, {"name": "x", "transform": "minmax"}, {"name": "k", "transform": "minmax"}).transform(frame)
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])


def test_given_log1p_and_a_value_below_minus_one_when_fitted_then_invalid_input_names_the_feature():
    frame = pd.DataFrame({"amount": [0.0, 3.0, -2.5]})
    with pytest.raises(InvalidInput, match="'amount'.*log1p.*-2.5"):
        fitted(frame, {"name": "amount", "transform": "log1p"})


def test_given_log1p_when_transforming_nan_or_out_of_range_then_nan_without_warnings():
    t = fitted(pd.DataFrame({"x": [0.0, np.e - 1]}), {"name": "x", "transform": "log1p"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = t.transform(pd.DataFrame({"x": [np.e - 1, None, -5.0]}))[:, 0]
    np.testing.assert_allclose(out[0], 1.0)
    assert np.isnan(out[1]) and np.isnan(out[2])


def test_given_bucketize_when_transformed_then_one_column_with_the_bucket_index_and_nan_stays_nan():
    t = fitted(pd.DataFrame({"x": [1.0]}), {"name": "x", "transform": "bucketize", "boundaries": [0, 10, 20]})
    out = t.transform(pd.DataFrame({"x": [-5, 0, 9.9, 10, 25, None]}))
    assert t.doc["outputColumns"] == ["x"]
    np.testing.assert_array_equal(out[:, 0], [0, 1, 1, 2, 3, np.nan])


def test_given_onehot_when_fitted_then_categories_sorted_as_text_named_name_eq_value_and_unknown_is_all_zeros():
    frame = pd.DataFrame({"color": ["red", "blue", "green", "blue"], "n": [10, 9, 10, 2]})
    t = fitted(frame, {"name": "color", "dtype": "category", "transform": "onehot"},
               {"name": "n", "dtype": "int", "transform": "onehot"})
    assert t.doc["outputColumns"] == ["color=blue", "color=green", "color=red", "n=10", "n=2", "n=9"]
    out = t.transform(pd.DataFrame({"color": ["green", "purple", None], "n": ["9", 9.0, 11]}))
    np.testing.assert_array_equal(out, [[0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])


def test_given_a_category_with_transform_none_from_an_older_crd_when_fitted_then_invalid_input_asks_for_onehot():
    # The CRD's CEL rejects this at apply time; a spec admitted before that rule existed still fails clearly.
    spec = spec_of({"name": "c", "dtype": "category", "transform": "onehot"})
    spec.features[0] = spec.features[0].model_copy(update={"transform": "none"})
    with pytest.raises(InvalidInput, match="'c'.*onehot"):
        fit_transform_doc(spec, pd.DataFrame({"c": ["a", "b"]}), feature_set="fs", version="v1")


def test_given_two_outputs_with_the_same_name_when_fitted_then_invalid_input():
    frame = pd.DataFrame({"c": ["x", "y"], "c=x": [1.0, 2.0]})
    with pytest.raises(InvalidInput, match="'c=x'"):
        fitted(frame, {"name": "c", "dtype": "category", "transform": "onehot"}, {"name": "c=x"})


# --- imputation ------------------------------------------------------------------------------------------

def test_given_mean_median_and_none_when_fitted_then_filled_values_and_none_leaves_nan():
    frame = pd.DataFrame({"m": [1.0, np.nan, 2.0, 9.0], "md": [1.0, np.nan, 2.0, 9.0], "n": [1.0, np.nan, 2.0, 9.0]})
    t = fitted(frame, {"name": "m", "impute": {"strategy": "mean"}}, {"name": "md", "impute": {"strategy": "median"}},
               {"name": "n"})
    row = t.transform(pd.DataFrame({"m": [None], "md": [None], "n": [None]}))[0]
    assert row[0] == 4.0 and row[1] == 2.0 and np.isnan(row[2])


def test_given_most_frequent_with_a_tie_when_fitted_then_the_smallest_as_text_wins_whatever_the_row_order():
    rows = pd.DataFrame({"c": ["b", "a", "b", "a", None]})
    spec = {"name": "c", "dtype": "category", "transform": "onehot", "impute": {"strategy": "most_frequent"}}
    assert feature(fitted(rows, spec).doc, "c")["impute"]["value"] == "a"
    assert feature(fitted(rows.iloc[::-1], spec).doc, "c")["impute"]["value"] == "a"


def test_given_constant_impute_when_fitted_then_value_converted_to_dtype_and_bad_text_names_the_feature():
    frame = pd.DataFrame({"n": [1, None], "flag": [True, None]})
    t = fitted(frame, {"name": "n", "dtype": "int", "impute": {"strategy": "constant", "value": "7"}},
               {"name": "flag", "dtype": "bool", "impute": {"strategy": "constant", "value": "yes"}})
    assert feature(t.doc, "n")["impute"]["value"] == 7.0
    np.testing.assert_array_equal(t.transform(frame)[1], [7.0, 1.0])
    with pytest.raises(InvalidInput, match="'n'.*'2.5'"):
        fitted(frame, {"name": "n", "dtype": "int", "impute": {"strategy": "constant", "value": "2.5"}})
    with pytest.raises(InvalidInput, match="'flag'.*'maybe'"):
        fitted(frame, {"name": "flag", "dtype": "bool", "impute": {"strategy": "constant", "value": "maybe"}})


def test_given_missing_category_when_fitted_then_missing_becomes_the_missing_column_even_if_none_was_missing():
    t = fitted(pd.DataFrame({"c": ["a", "b"]}),
               {"name": "c", "dtype": "category", "transform": "onehot", "impute": {"strategy": "missing_category"}})
    assert t.doc["outputColumns"] == ["c=__missing__", "c=a", "c=b"]
    np.testing.assert_array_equal(t.transform(pd.DataFrame({"c": [None, "b"]})), [[1, 0, 0], [0, 0, 1]])


def test_given_knn_when_fitted_then_a_bounded_sample_rebuilds_sklearns_knn_imputer_exactly():
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000)
    frame = pd.DataFrame({"x": x, "y": 2 * x + rng.normal(scale=0.01, size=2000)})
    frame.loc[::7, "y"] = np.nan
    t = fitted(frame, {"name": "x"}, {"name": "y", "impute": {"strategy": "knn"}})
    knn = t.doc["knn"]
    assert knn["columns"] == ["x", "y"] and len(knn["sample"]) == KNN_MAX_SAMPLE and knn["neighbors"] == 5
    query = pd.DataFrame({"x": [0.5, -1.0, 0.3], "y": [None, None, 9.0]})
    sample = np.array([[np.nan if v is None else v for v in row] for row in knn["sample"]])
    expected = KNNImputer(n_neighbors=5).fit(sample).transform(query.to_numpy(dtype=float))
    out = FeatureTransformer(json.loads(json.dumps(t.doc))).transform(query)
    np.testing.assert_array_equal(out, expected)
    assert abs(out[0, 1] - 1.0) < 0.2 and out[2, 1] == 9.0  # near 2x; a present value is kept


def test_given_impute_none_and_standardize_when_fitted_then_statistics_ignore_missing_and_nan_stays_nan():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
    t = fitted(frame, {"name": "x", "transform": "standardize"})
    assert feature(t.doc, "x")["transform"] == {"kind": "standardize", "mean": 2.0, "scale": 1.0}
    assert np.isnan(t.transform(frame)[1, 0])


def test_given_mean_impute_and_minmax_when_fitted_then_the_transform_sees_the_imputed_column():
    frame = pd.DataFrame({"x": [0.0, np.nan, 10.0]})
    t = fitted(frame, {"name": "x", "transform": "minmax", "impute": {"strategy": "mean"}})
    np.testing.assert_allclose(t.transform(frame)[:, 0], [0.0, 0.5, 1.0])


def test_given_an_all_missing_feature_with_mean_impute_when_fitted_then_invalid_input_names_it():
    with pytest.raises(InvalidInput, match="'x'.*all missing"):
        fitted(pd.DataFrame({"x": [np.nan, np.nan]}), {"name": "x", "impute": {"strategy": "mean"}})


def test_given_policy_impute_and_a_checked_feature_without_impute_when_fitted_then_median_or_most_frequent():
    frame = pd.DataFrame({"x": [1.0, 2.0, 10.0, np.nan], "c": ["a", "a", "b", None], "u": [1.0, 2.0, 3.0, np.nan]})
    t = fitted(frame, {"name": "x", "checks": {"max": 5}},
               {"name": "c", "dtype": "category", "transform": "onehot", "checks": {"allowedValues": ["a", "b"]}},
               {"name": "u"}, qualityPolicy={"onViolation": "impute"})
    assert feature(t.doc, "x")["impute"] == {"strategy": "median", "value": 2.0}
    assert feature(t.doc, "c")["impute"] == {"strategy": "most_frequent", "value": "a"}
    assert feature(t.doc, "u")["impute"] == {"strategy": "none"}
