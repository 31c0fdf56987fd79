"""Training data: bundled datasets only (no downloads), file parsing, and refusal of unusable data."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlops_operator.runtime.train_config import InvalidInput
from mlops_operator.runtime.train_data import (
    BUILTIN_DATASETS,
    check_training_data,
    frame_from_bytes,
    load_builtin,
    split_target,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("name", "rows", "features"), [
    ("breast_cancer", 569, 30), ("iris", 150, 4), ("wine", 178, 13), ("diabetes", 442, 10), ("digits", 1797, 64),
])
def test_given_builtin_name_when_loaded_then_bundled_frame_and_stable_sha(name, rows, features):
    data = load_builtin(name)
    assert data.X.shape == (rows, features) and len(data.y) == rows
    assert data.source == f"builtin:{name}"
    assert data.sha256 == load_builtin(name).sha256 and len(data.sha256) == 64
    check_training_data(data.X, data.y)


def test_given_unknown_builtin_when_loaded_then_invalid_input_lists_the_choices():
    with pytest.raises(InvalidInput, match="unknown dataset.builtin 'mnist'.*breast_cancer"):
        load_builtin("mnist")
    assert "california_housing" not in BUILTIN_DATASETS  # fetch_* datasets download: never offered


def test_given_csv_and_parquet_bytes_when_read_then_same_frame():
    df = pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]})
    buf = io.BytesIO()
    df.to_parquet(buf)
    assert frame_from_bytes(buf.getvalue(), "parquet", "s3://b/d.parquet").equals(df)
    assert frame_from_bytes(df.to_csv(index=False).encode(), "csv", "s3://b/d.csv").equals(df)


def test_given_corrupt_file_when_read_then_invalid_input_names_the_uri():
    with pytest.raises(InvalidInput, match="cannot read s3://b/d.parquet as parquet"):
        frame_from_bytes(b"PAR1 garbage", "parquet", "s3://b/d.parquet")


def test_given_missing_target_column_when_split_then_invalid_input_names_it_and_the_columns():
    df = pd.DataFrame({"a": [1.0], "b": [2.0]})
    with pytest.raises(InvalidInput, match=r"target column 'label' not found in s3://b/d.csv; columns: 'a', 'b'"):
        split_target(df, "label", "s3://b/d.csv")
    with pytest.raises(InvalidInput, match="no feature columns"):
        split_target(df[["a"]], "a", "s3://b/d.csv")


def test_given_nan_and_inf_when_checked_then_invalid_input_names_exactly_those_columns():
    X = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "holes": [1.0, np.nan, 3.0], "huge": [np.inf, 1.0, 2.0]})
    with pytest.raises(InvalidInput) as info:
        check_training_data(X, pd.Series([0, 1, 0], name="y"))
    message = str(info.value)
    assert "'holes'" in message and "'huge'" in message and "'ok'" not in message and "2 rows" in message


def test_given_text_feature_when_checked_then_invalid_input_points_to_a_featureset():
    X = pd.DataFrame({"colour": ["red", "blue"], "x": [1.0, 2.0]})
    with pytest.raises(InvalidInput, match="non-numeric feature column.*'colour'.*FeatureSet"):
        check_training_data(X, pd.Series([0, 1]))


def test_given_bad_target_or_too_few_rows_when_checked_then_invalid_input():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(InvalidInput, match="target column 'y' has 1 missing"):
        check_training_data(X, pd.Series([0.0, np.nan, 1.0], name="y"))
    with pytest.raises(InvalidInput, match="infinite"):
        check_training_data(X, pd.Series([0.0, np.inf, 1.0], name="y"))
    with pytest.raises(InvalidInput, match="at least 2 rows"):
        check_training_data(X.iloc[:1], pd.Series([0]))


def test_given_many_bad_columns_when_named_then_message_stays_short():
    X = pd.DataFrame({f"c{i}": [np.nan, 1.0] for i in range(30)})
    with pytest.raises(InvalidInput, match="and 20 more"):
        check_training_data(X, pd.Series([0, 1]))
