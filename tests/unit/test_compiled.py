"""Compiled inference (ONNX): conversion at training proves equivalence, the server answers as scikit-learn does.

Real skl2onnx and onnxruntime, no mocks: the conversion, the check on test rows and the served answers
are the ones the training Job and the model server produce.
"""

from __future__ import annotations

import uuid
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.logic.compiled import compiled_condition, compiled_status
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_compiled import CompiledPredictor, compiled_allowed, load_compiled
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime
from mlops_operator.runtime.train_compile import PROBA_TOLERANCE, compare, compile_model

pytestmark = pytest.mark.unit

warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


def split(loader):
    X, y = loader(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.2, random_state=42)


@pytest.fixture(scope="module")
def cancer():
    return split(load_breast_cancer)


@pytest.fixture(scope="module")
def diabetes():
    return split(load_diabetes)


@pytest.fixture(scope="module")
def forest(cancer):
    X_train, X_test, y_train, _ = cancer
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_train, y_train)
    return model, compile_model(model, X_test)


# ------------------------------------------------------------------------------------------ training side
def test_given_a_random_forest_when_compiled_then_available_with_identical_classes_and_tolerance(cancer, forest):
    model, compiled = forest
    X_test = cancer[1]
    report = compiled.report
    assert report["available"] is True and report["format"] == "onnx" and compiled.onnx
    assert report["rows"] == len(X_test) and report["tolerance"] == PROBA_TOLERANCE
    assert 0 <= report["maxDifference"] <= report["tolerance"]
    served = CompiledPredictor(compiled.onnx, model.classes_).predict(X_test.to_numpy())
    assert served.dtype == model.predict(X_test).dtype
    assert np.array_equal(served, model.predict(X_test))


@pytest.mark.parametrize("make, precision", [
    (lambda: LogisticRegression(max_iter=5000), "double"),
    (lambda: GradientBoostingClassifier(n_estimators=50, random_state=0), "float"),
])
def test_given_linear_and_boosted_classifiers_when_compiled_then_each_gets_the_precision_that_matches(cancer, make, precision):
    X_train, X_test, y_train, _ = cancer
    model = make().fit(X_train, y_train)
    compiled = compile_model(model, X_test)
    assert compiled.report["available"] is True and compiled.report["inputType"] == precision
    assert np.array_equal(CompiledPredictor(compiled.onnx, model.classes_).predict(X_test.to_numpy()), model.predict(X_test))


@pytest.mark.parametrize("make", [lambda: RandomForestRegressor(n_estimators=30, random_state=0), Ridge])
def test_given_a_regressor_when_compiled_then_values_within_the_recorded_tolerance(diabetes, make):
    X_train, X_test, y_train, _ = diabetes
    model = make().fit(X_train, y_train)
    compiled = compile_model(model, X_test)
    report = compiled.report
    assert report["available"] is True
    served = CompiledPredictor(compiled.onnx).predict(X_test.to_numpy())
    assert np.max(np.abs(served - model.predict(X_test))) == pytest.approx(report["maxDifference"], abs=1e-12)
    assert report["maxDifference"] <= report["tolerance"]


@pytest.mark.parametrize("make, loader, name", [
    (DummyClassifier, load_breast_cancer, "DummyClassifier"),
    (KernelRidge, load_diabetes, "KernelRidge"),
])
def test_given_an_estimator_skl2onnx_cannot_convert_when_compiled_then_unavailable_with_the_reason(make, loader, name):
    X_train, X_test, y_train, _ = split(loader)
    compiled = compile_model(make().fit(X_train, y_train), X_test)
    assert compiled.onnx is None and compiled.report["available"] is False
    assert name in compiled.report["reason"] and "scikit-learn" in compiled.report["reason"]


def test_given_a_featureset_pipeline_when_compiled_then_it_stays_on_sklearn_naming_the_transform():
    from tests.unit.test_train_featureset import NUMERIC, breast_cancer, fit, snapshot, snapshot_training_data, training
    from mlops_operator.api.v1alpha1.training import FeatureSetRef

    rows, doc = snapshot(breast_cancer(), NUMERIC, entityKey="id", target="label")
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc", version="v3"), "s3://b/f/", "f" * 64)
    fitted = fit(data, training(metrics=["accuracy"]))[0]
    compiled = compile_model(fitted.model, fitted.X_test)
    assert compiled.onnx is None and "FeatureTransformer" in compiled.report["reason"]


def test_given_a_compiled_form_of_another_model_when_compared_then_the_mismatch_is_refused(cancer, forest):
    X_train, X_test, y_train, _ = cancer
    _, compiled = forest
    other = RandomForestClassifier(n_estimators=3, max_depth=1, random_state=7).fit(X_train, 1 - y_train)
    matches, _, _, why = compare(other, CompiledPredictor(compiled.onnx, other.classes_), X_test.to_numpy())
    assert not matches and "different class" in why


def test_given_test_rows_with_missing_values_when_compiled_then_proven_on_the_complete_rows_only(cancer):
    X_train, X_test, y_train, _ = cancer
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X_train, y_train)
    holes = X_test.copy()
    holes.iloc[:10, 0] = np.nan
    assert compile_model(model, holes).report["rows"] == len(X_test) - 10


# ------------------------------------------------------------------------------------------ serving side
def test_given_settings_and_records_when_deciding_then_compiled_only_with_auto_a_proven_record_and_the_file():
    files = {"files": {"model.onnx": {}}}
    proven = {"compiled": {"available": True}}
    assert compiled_allowed("auto", proven, files)[0] is True
    assert compiled_allowed("off", proven, files) == (False, "serving.compiledModel is off")
    assert compiled_allowed("auto", {"compiled": {"available": False, "reason": "r"}}, files)[0] is False
    assert compiled_allowed("auto", None, files)[0] is False
    assert compiled_allowed("auto", proven, {"files": {}})[0] is False


def test_given_bytes_onnxruntime_cannot_run_when_loaded_then_none_and_sklearn_serves(forest):
    model, _ = forest
    assert load_compiled(b"not an onnx graph", model, 1) is None
    assert load_compiled(None, model, 1) is None


def test_given_a_compiled_runtime_when_a_row_has_a_missing_value_then_sklearn_answers_it(cancer):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X_train, X_test, y_train, _ = cancer
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X_train, y_train)
    compiled = compile_model(model, X_test)
    assert compiled.onnx is not None
    predictor = CompiledPredictor(compiled.onnx, model.classes_)
    calls = []
    onnx_predict = predictor.predict
    predictor.predict = lambda x: calls.append(len(x)) or onnx_predict(x)
    runtime = ModelRuntime(model, compiled=predictor)
    rows = X_test.to_numpy()[:5].copy()
    assert np.array_equal(runtime.predict(rows), model.predict(rows)) and calls == [5]
    rows[0, 3] = np.nan
    assert np.array_equal(runtime.predict(rows), model.predict(rows)) and calls == [5]


def _app(runtime: ModelRuntime) -> ServeApp:
    name = f"bc-{uuid.uuid4().hex[:8]}"
    return ServeApp(SklearnModel(name, "v1", runtime=runtime), ServeMetrics(name, "v1", "stable"), max_body_bytes=1 << 20)


async def test_given_compiled_and_sklearn_servers_when_asked_v1_and_v2_then_equal_answers_and_equal_drift_windows(cancer, forest):
    model, compiled = forest
    rows = cancer[1].to_numpy()
    fast = _app(ModelRuntime(model, compiled=CompiledPredictor(compiled.onnx, model.classes_)))
    plain = _app(ModelRuntime(model))
    answers = {}
    for key, app in (("fast", fast), ("plain", plain)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
            v1 = await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": rows.tolist()})
            v2 = await http.post(f"/v2/models/{app.model.name}/infer", json={"inputs": [
                {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]})
            meta = await http.get(f"/v2/models/{app.model.name}")
        answers[key] = (v1.json()["predictions"], v2.json()["outputs"], meta.json()["platform"])
    assert answers["fast"][:2] == answers["plain"][:2]
    assert answers["fast"][0] == model.predict(rows).tolist()
    assert (answers["fast"][2], answers["plain"][2]) == ("onnxruntime", "sklearn")
    fast_rows, fast_predictions = fast.model.runtime.window.snapshot()
    plain_rows, plain_predictions = plain.model.runtime.window.snapshot()
    assert np.array_equal(fast_rows, plain_rows) and np.array_equal(fast_predictions, plain_predictions)


# ------------------------------------------------------------------------------------------ operator side
def test_given_a_compiled_report_when_recorded_then_status_and_condition_carry_format_and_tolerance(forest):
    status = compiled_status({"compiled": forest[1].report})
    assert status["available"] is True and status["format"] == "onnx" and "tolerance" in status
    state, reason, message = compiled_condition(status)
    assert (state, reason) == ("True", "Compiled") and "tolerance" in message


@pytest.mark.parametrize("report", [None, {}, {"compiled": "yes"}, {"compiled": {"available": "maybe"}},
                                    {"compiled": {"available": True}}])
def test_given_a_missing_or_untrustworthy_report_when_recorded_then_not_compiled(report):
    status = compiled_status(report)
    assert status["available"] is False and status["reason"]
    assert compiled_condition(status)[:2] == ("False", "NotCompiled")


def test_given_an_unconvertible_report_when_recorded_then_the_reason_is_in_status_and_condition():
    status = compiled_status({"compiled": {"available": False, "reason": "skl2onnx has no converter for KernelRidge"}})
    assert status == {"available": False, "reason": "skl2onnx has no converter for KernelRidge"}
    assert "KernelRidge" in compiled_condition(status)[2]


def test_given_a_deployment_when_compiled_model_unset_then_auto_and_only_auto_or_off_accepted():
    spec = ModelDeploymentSpec.model_validate({"model": "bc", "version": "v1", "serving": {}})
    assert spec.serving.compiled_model == "auto"
    assert ModelDeploymentSpec.model_validate(
        {"model": "bc", "version": "v1", "serving": {"compiledModel": "off"}}).serving.compiled_model == "off"
    with pytest.raises(ValueError):
        ModelDeploymentSpec.model_validate({"model": "bc", "version": "v1", "serving": {"compiledModel": "fast"}})


def test_given_a_forest_with_a_tied_vote_on_a_test_row_when_compiled_then_refused_with_the_row_count():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    model = RandomForestClassifier(n_estimators=40, random_state=1).fit(X_train, y_train)
    assert (model.predict_proba(X_test) == 0.5).any()  # 20 trees each way on some row: float32 sums may flip it
    compiled = compile_model(model, X_test)
    assert compiled.onnx is None and "1 of 114 test rows get a different class" in compiled.report["reason"]
