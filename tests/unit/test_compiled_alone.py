"""A compiled version served by onnxruntime alone: the schema travels in model.onnx, the estimator loads only
when a row with a missing value needs it, and a model.onnx without that schema is served as before."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.model_selection import train_test_split

from mlops_operator.runtime.serve_compiled import SCHEMA_KEYS, CompiledPredictor, schema_metadata
from mlops_operator.runtime.serve_errors import InferenceError
from mlops_operator.runtime.serve_model import ArtifactSource, SklearnModel
from mlops_operator.runtime.serve_protocol import v1_matrix
from mlops_operator.runtime.train_compile import compile_model
from tests.unit.served_files import MemoryVersion, version_files

pytestmark = pytest.mark.unit

warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.2, random_state=42)


@pytest.fixture(scope="module")
def boosted(cancer):
    """A classifier that imputes missing values itself, fitted on named columns, and its proven compiled form."""
    X_train, X_test, y_train, _ = cancer
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X_train, y_train)
    compiled = compile_model(model, X_test)
    assert compiled.onnx is not None, compiled.report
    return model, compiled


def served(files: dict[str, bytes]) -> tuple[SklearnModel, MemoryVersion]:
    store = MemoryVersion(files)
    model = SklearnModel("bc", "v1", source=ArtifactSource(store, "models/bc/v1/"))
    model.load()
    return model, store


def test_given_a_compiled_classifier_when_converted_then_its_onnx_carries_features_names_and_classes(cancer, boosted):
    model, compiled = boosted
    schema = CompiledPredictor(compiled.onnx).schema
    assert schema is not None
    assert schema.n_features == 30 and schema.feature_names == list(cancer[0].columns)
    assert schema.classes == model.classes_.tolist()


def test_given_a_version_with_a_compiled_form_when_loaded_then_the_estimator_is_not_fetched_and_answers_match(
        cancer, boosted):
    model, compiled = boosted
    server, store = served(version_files(model, compiled))
    rows = cancer[1].to_numpy()
    assert server.runtime.estimator is None and store.fetched["model.joblib"] == 0
    answer, y = server.infer_now({"instances": rows.tolist()})
    assert answer["predictions"] == model.predict(rows).tolist() and y.dtype == model.classes_.dtype
    assert server.metadata()["platform"] == "onnxruntime"
    assert (server.runtime.task, server.runtime.numeric_output) == ("classification", True)


def test_given_a_compiled_form_alone_when_rows_with_missing_values_arrive_then_the_estimator_loads_once_and_answers(
        cancer, boosted):
    model, compiled = boosted
    server, store = served(version_files(model, compiled))
    rows = cancer[1].to_numpy()[:4].copy()
    rows[1, 5] = np.nan
    for _ in range(2):
        _, y = server.infer_now({"instances": [[None if np.isnan(v) else v for v in row] for row in rows.tolist()]})
        assert y.tolist() == model.predict(rows).tolist()
    assert store.fetched["model.joblib"] == 1 and server.runtime.estimator is not None


def test_given_the_estimator_cannot_be_fetched_when_a_missing_value_arrives_then_that_request_fails_and_a_later_one_loads(
        cancer, boosted):
    model, compiled = boosted
    server, store = served(version_files(model, compiled))
    joblib_bytes = store.files.pop("model.joblib")
    rows = np.array(cancer[1].to_numpy()[:1])
    rows[0, 0] = np.nan
    x = v1_matrix({"instances": rows.tolist()}, server.runtime.schema)
    with pytest.raises(InferenceError, match="missing values are answered by the scikit-learn model"):
        server.runtime.predict(x)
    store.files["model.joblib"] = joblib_bytes
    assert server.runtime.predict(x).tolist() == model.predict(rows).tolist()


def test_given_a_compiled_form_without_its_schema_when_loaded_then_the_estimator_is_loaded_beside_it(cancer, boosted):
    model, compiled = boosted
    proto = onnx.load_from_string(compiled.onnx)
    kept = [entry for entry in proto.metadata_props if entry.key not in SCHEMA_KEYS]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    files = version_files(model, compiled) | {"model.onnx": proto.SerializeToString()}
    server, store = served(files)
    assert store.fetched["model.joblib"] == 1 and server.runtime.compiled is not None
    rows = cancer[1].to_numpy()
    _, y = server.infer_now({"instances": rows.tolist()})
    assert y.tolist() == model.predict(rows).tolist() and y.dtype == model.classes_.dtype


def test_given_a_compiled_regressor_when_served_alone_then_values_are_floats_within_the_tolerance(cancer):
    X_train, X_test, _, _ = cancer
    target = X_train["mean radius"] * 2.0
    model = RandomForestRegressor(n_estimators=20, random_state=0).fit(X_train.drop(columns="mean radius"), target)
    compiled = compile_model(model, X_test.drop(columns="mean radius"))
    assert compiled.onnx is not None, compiled.report
    server, _ = served(version_files(model, compiled))
    rows = X_test.drop(columns="mean radius").to_numpy()
    _, y = server.infer_now({"instances": rows.tolist()})
    assert server.runtime.estimator is None and server.runtime.task == "regression" and y.dtype == np.float64
    assert np.max(np.abs(y - model.predict(rows))) <= compiled.report["tolerance"]


@pytest.mark.parametrize(("classes", "kept"), [
    (np.array([0, 1], dtype=np.int64), True),
    (np.array(["benign", "malignant"], dtype=object), True),
    (np.array([0.0, 1.0]), True),
    (np.array([0, 1], dtype=np.int32), False),  # JSON would bring them back as int64
])
def test_given_classes_of_a_kind_when_recorded_then_kept_only_if_they_come_back_the_same(classes, kept):
    assert (schema_metadata(2, None, classes) is not None) == kept
