"""Training on a FeatureSet snapshot and serving the result: raw columns in, the fitted transform inside.

Snapshots are built in memory exactly as ``mlops-materialize`` builds them (``build_snapshot`` +
``fit_transform_doc``); storage is the integration test's job (test_train_featureset_minio.py).
"""

from __future__ import annotations

import io
import uuid

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import Pipeline

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.features.dtypes import convert
from mlops_operator.features.snapshot import build_snapshot
from mlops_operator.features.transform import FeatureTransformer, fit_transform_doc
from mlops_operator.runtime import materialize
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_drift import window_stats
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime
from mlops_operator.runtime.train import Fitted, fit_evaluate
from mlops_operator.runtime.train_artifacts import serialize_model
from mlops_operator.runtime.train_config import (
    ENV_FEATURESET_URI,
    FeatureSetRef,
    InvalidInput,
    Training,
    load_config,
)
from mlops_operator.runtime.train_data import (
    SNAPSHOT_DATA,
    SNAPSHOT_TRANSFORM,
    TrainingData,
    snapshot_training_data,
)
from mlops_operator.runtime.train_estimator import build_estimator, effective_parameters
from mlops_operator.runtime.train_metrics import select_metrics, task_of

pytestmark = pytest.mark.unit

URI = "s3://bucket/features/bc/v3/"
NUMERIC = [
    {"name": "radius", "transform": "standardize"},
    {"name": "texture", "transform": "minmax", "impute": {"strategy": "median"}},
    {"name": "perimeter", "transform": "log1p"},
    {"name": "area", "transform": "bucketize", "boundaries": [500, 1000]},
]


def breast_cancer(missing_every: int = 7) -> pd.DataFrame:
    """Four real columns, an id and the label; every ``missing_every``-th texture is missing."""
    frame = load_breast_cancer(as_frame=True).frame
    out = pd.DataFrame({
        "id": [f"p{i}" for i in range(len(frame))],
        "radius": frame["mean radius"], "texture": frame["mean texture"],
        "perimeter": frame["mean perimeter"], "area": frame["mean area"], "label": frame["target"],
    })
    out.loc[::missing_every, "texture"] = np.nan
    return out


def snapshot(source: pd.DataFrame, features: list[dict] | None, version: str = "v3",
             **spec: object) -> tuple[pd.DataFrame, dict]:
    """(data.parquet rows, transform.json) as the materializer writes them."""
    fs = FeatureSetSpec.model_validate({"source": {"builtin": "breast_cancer"}, "features": features, **spec})
    snap = build_snapshot(fs, source, "the test source")
    rows = pd.read_parquet(io.BytesIO(snap.frame.to_parquet(index=False)))  # the trainer reads it back
    return rows, fit_transform_doc(fs, snap.frame, feature_set="bc", version=version)


def training(estimator: str = "sklearn.linear_model.LogisticRegression", **extra: object) -> Training:
    return Training.model_validate({"featureSet": {"name": "bc", "version": "v3"}, "estimator": estimator,
                                    "split": {"testFraction": 0.25, "seed": 1}, **extra})


def fit(data: TrainingData, spec: Training, hyperparameters: dict | None = None) -> tuple[Fitted, object]:
    """What ``train`` does between loading and uploading; returns (fitted, the estimator)."""
    estimator = build_estimator(spec.estimator, hyperparameters or {"max_iter": 2000})
    task = task_of(estimator)
    return fit_evaluate(spec, estimator, task, select_metrics(spec.metrics, task, estimator), data), estimator


@pytest.fixture(scope="module")
def bc_snapshot() -> tuple[pd.DataFrame, dict]:
    return snapshot(breast_cancer(), NUMERIC, entityKey="id", target="label")


@pytest.fixture(scope="module")
def bc_fitted(bc_snapshot) -> Fitted:
    rows, doc = bc_snapshot
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc", version="v3"), URI, "f" * 64)
    return fit(data, training(metrics=["accuracy", "roc_auc", "log_loss"]))[0]


# ------------------------------------------------------------------------------------------ configuration
def test_given_snapshot_file_names_then_they_are_the_materializers():
    assert (SNAPSHOT_DATA, SNAPSHOT_TRANSFORM) == (materialize.DATA_FILE, materialize.TRANSFORM_FILE)


def _env(**extra: str) -> dict[str, str]:
    return {"MLOPS_MODEL": "bc", "MLOPS_MODEL_VERSION": "bc-v1", "MLOPS_ARTIFACT_PREFIX": "s3://mlops/models/bc/bc-v1",
            "MLOPS_TRAINING": '{"featureSet": {"name": "bc", "version": "v3"}, "estimator": "sklearn.svm.SVC"}', **extra}


def test_given_featureset_and_snapshot_uri_when_config_loaded_then_uri_is_a_directory():
    cfg = load_config(_env(**{ENV_FEATURESET_URI: "s3://mlops/features/bc/v3"}))
    assert str(cfg.feature_set_uri) == "s3://mlops/features/bc/v3/"
    assert cfg.training.feature_set == FeatureSetRef(name="bc", version="v3")


@pytest.mark.parametrize(("uri", "message"), [
    (None, f"training.featureSet 'bc' is set but {ENV_FEATURESET_URI} is not"),
    ("http://mlops/features/bc/v3/", f"{ENV_FEATURESET_URI}: not an s3:// URI"),
    ("s3://mlops", f"{ENV_FEATURESET_URI} needs a key below the bucket"),
])
def test_given_featureset_without_a_valid_snapshot_uri_when_config_loaded_then_invalid_input(uri, message):
    env = _env(**({ENV_FEATURESET_URI: uri} if uri else {}))
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.")):
        load_config(env)


def test_given_dataset_training_when_config_loaded_then_no_snapshot_uri_needed():
    cfg = load_config(_env(MLOPS_TRAINING='{"dataset": {"builtin": "iris"}, "estimator": "sklearn.svm.SVC"}'))
    assert cfg.feature_set_uri is None


# ------------------------------------------------------------------------------------------ reading a snapshot
def test_given_snapshot_when_read_then_x_is_the_raw_input_columns_and_y_the_target(bc_snapshot):
    rows, doc = bc_snapshot
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc", version="v3"), URI, "ab" * 32)
    assert list(data.X.columns) == ["radius", "texture", "perimeter", "area"]  # no id, no label
    assert data.X["texture"].isna().sum() == rows["texture"].isna().sum() > 0  # raw: nothing imputed yet
    assert data.y.name == "label" and len(data.y) == len(rows)
    assert data.source == "featureset:bc/v3" and data.sha256 == "ab" * 32
    assert data.feature_set == {"name": "bc", "version": "v3", "uri": URI}
    unpinned = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "ab" * 32)
    assert unpinned.source == "featureset:bc/v3"  # the version comes from the snapshot itself


def test_given_featureset_without_target_when_read_then_invalid_input_says_set_spec_target():
    rows, doc = snapshot(breast_cancer().drop(columns=["label"]), NUMERIC, entityKey="id")
    with pytest.raises(InvalidInput, match=r"^FeatureSet bc has no target column; set spec.target \(or train with training.featureSet.labels\)$"):
        snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)


@pytest.mark.parametrize(("ref", "message"), [
    (FeatureSetRef(name="other"), "belongs to FeatureSet 'bc', not 'other'"),
    (FeatureSetRef(name="bc", version="v9"), "is version 'v3' of FeatureSet 'bc', but training.featureSet.version pins 'v9'"),
])
def test_given_snapshot_of_another_featureset_or_version_when_read_then_invalid_input(bc_snapshot, ref, message):
    rows, doc = bc_snapshot
    with pytest.raises(InvalidInput, match=message):
        snapshot_training_data(rows, doc, ref, URI, "0" * 64)


def test_given_data_without_a_column_the_transform_names_when_read_then_invalid_input_names_it(bc_snapshot):
    rows, doc = bc_snapshot
    with pytest.raises(InvalidInput, match="lacks column.*'area'"):
        snapshot_training_data(rows.drop(columns=["area"]), doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    with pytest.raises(InvalidInput, match="not a mlops.dev/feature-transform/v1 document"):
        snapshot_training_data(rows, {**doc, "format": "x"}, FeatureSetRef(name="bc"), URI, "0" * 64)


# ------------------------------------------------------------------------------------------ training
def test_given_raw_nan_the_transform_imputes_when_trained_then_pipeline_of_fitted_transform_and_estimator(bc_snapshot, bc_fitted):
    rows, doc = bc_snapshot
    model = bc_fitted.model
    assert isinstance(model, Pipeline) and [n for n, _ in model.steps] == ["features", "model"]
    assert model.named_steps["features"].doc == doc  # the snapshot's fitted transform, not refitted
    raw = rows[doc["inputColumns"]]
    assert raw.isna().any().any()
    expected = model.named_steps["model"].predict(FeatureTransformer(doc).transform(raw))
    assert np.array_equal(model.predict(raw), expected)
    assert set(bc_fitted.metrics) == {"accuracy", "roc_auc", "log_loss"}
    assert bc_fitted.metrics["accuracy"] > 0.85 and bc_fitted.metrics["roc_auc"] > 0.9
    assert (bc_fitted.train_rows, bc_fitted.test_rows) == (426, 143)


def test_given_impute_none_with_nan_when_trained_then_invalid_input_names_the_feature_and_the_featureset():
    features = [dict(f, impute={"strategy": "none"}) if f["name"] == "texture" else f for f in NUMERIC]
    rows, doc = snapshot(breast_cancer(), features, entityKey="id", target="label")
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    with pytest.raises(InvalidInput, match=r"NaN or infinite values in feature column\(s\) 'texture' \(82 rows\); "
                                           r"set impute for these features in FeatureSet bc"):
        fit(data, training())


def test_given_missing_labels_when_trained_then_invalid_input_names_the_target(bc_snapshot):
    rows, doc = bc_snapshot
    rows = rows.astype({"label": "float64"})
    rows.loc[3, "label"] = np.nan
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    with pytest.raises(InvalidInput, match="target column 'label' has 1 missing values"):
        fit(data, training())


def test_given_forest_on_snapshot_when_trained_then_parameters_are_the_estimators_own(bc_snapshot):
    rows, doc = bc_snapshot
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    fitted, estimator = fit(data, training("sklearn.ensemble.RandomForestClassifier"),
                            {"n_estimators": 15, "random_state": 0})
    assert fitted.model.named_steps["model"] is estimator
    assert effective_parameters(estimator)["n_estimators"] == 15
    assert list(fitted.model.classes_) == [0, 1]


def test_given_regressor_on_snapshot_when_trained_then_regression_metrics_on_the_pipeline(bc_snapshot):
    rows, doc = bc_snapshot
    rows = rows.assign(label=rows["area"] * 0.01 + rows["radius"])
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    fitted, _ = fit(data, training("sklearn.linear_model.Ridge", metrics=["r2", "rmse"]), {"alpha": 1.0})
    assert fitted.metrics["r2"] > 0.8 and fitted.metrics["rmse"] > 0
    assert "prediction" in fitted.reference and fitted.reference["prediction"]["kind"] == "numeric"


MIXED_FEATURES = [
    {"name": "radius", "transform": "standardize"},
    {"name": "texture", "impute": {"strategy": "mean"}},
    {"name": "grade", "dtype": "int", "transform": "onehot"},
    {"name": "smoker", "dtype": "bool", "impute": {"strategy": "most_frequent"}},
    {"name": "colour", "dtype": "category", "transform": "onehot", "impute": {"strategy": "missing_category"}},
]


@pytest.fixture(scope="module")
def mixed() -> tuple[pd.DataFrame, dict, Fitted]:
    source = breast_cancer()
    rng = np.random.default_rng(0)
    n = len(source)
    source["grade"] = rng.integers(1, 4, n)
    source["smoker"] = pd.array(rng.random(n) < 0.3, dtype="boolean")
    source.loc[::11, "smoker"] = pd.NA
    source["colour"] = rng.choice(["red", "green", None], n)
    rows, doc = snapshot(source, MIXED_FEATURES, entityKey="id", target="label")
    data = snapshot_training_data(rows, doc, FeatureSetRef(name="bc"), URI, "0" * 64)
    return rows, doc, fit(data, training())[0]


def test_given_int_bool_and_category_features_when_trained_then_signature_has_the_declared_raw_dtypes(mixed):
    _, _, fitted = mixed
    assert fitted.signature["inputs"] == [
        {"name": "radius", "dtype": "float"}, {"name": "texture", "dtype": "float"},
        {"name": "grade", "dtype": "int"}, {"name": "smoker", "dtype": "bool"},
        {"name": "colour", "dtype": "category"},
    ]
    assert fitted.signature["outputs"] == [{"name": "prediction", "dtype": "int"}]


def test_given_category_feature_when_reference_built_then_numeric_raw_inputs_profiled_and_category_named(mixed):
    _, _, fitted = mixed
    ref = fitted.reference
    assert list(ref["features"]) == ["radius", "texture", "grade", "smoker"]
    assert ref["features"]["texture"]["kind"] == "numeric" and ref["features"]["texture"]["missingFraction"] > 0.1
    assert ref["features"]["smoker"]["kind"] == "categorical" and ref["features"]["smoker"]["missingFraction"] > 0.05
    assert ref["notProfiled"] == {"colour": "category feature: requests carry numbers only"}
    assert any("category feature(s) colour not profiled" in w for w in fitted.warnings)


def test_given_training_rows_sent_as_requests_then_server_drift_against_the_reference_is_near_zero(mixed):
    """The reference describes raw inputs in the representation the server records (float64, NaN)."""
    rows, doc, fitted = mixed
    names = list(fitted.reference["features"])
    dtypes = {f["name"]: f["dtype"] for f in doc["features"]}
    served = np.column_stack([convert(rows[c], c, dtypes[c]) for c in names])
    stats = window_stats(served, [], names, fitted.reference, min_rows=10)
    assert set(stats.drift["psi"]) == set(names)
    assert max(stats.drift["psi"].values()) < 0.05
    assert stats.missing["smoker"] == pytest.approx(fitted.reference["features"]["smoker"]["missingFraction"], abs=0.03)


# ------------------------------------------------------------------------------------------ serving
def make_app(model: object) -> ServeApp:
    name = f"bc-{uuid.uuid4().hex[:8]}"  # module-level instruments: a fresh label set per test
    served = SklearnModel(name, "bc-v1", runtime=ModelRuntime(model))
    return ServeApp(served, ServeMetrics(name, "bc-v1", "candidate"))


async def post(app: ServeApp, body: dict, v2: bool = False) -> httpx.Response:
    path = f"/v2/models/{app.model.name}/infer" if v2 else f"/v1/models/{app.model.name}:predict"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as http:
        return await http.post(path, json=body)


def v2_body(rows: list[list[float | None]]) -> dict:
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": flat}]}


def test_given_featureset_pipeline_when_served_then_schema_is_the_raw_input_columns(bc_fitted, bc_snapshot):
    _, doc = bc_snapshot
    runtime = ModelRuntime(bc_fitted.model)
    assert runtime.schema.n_features == 4 and runtime.schema.names == doc["inputColumns"]
    model = SklearnModel("bc", "bc-v1", runtime=runtime)
    assert model.get_input_types() == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]


async def test_given_raw_rows_with_nulls_when_served_then_predictions_equal_the_in_process_transform_and_predict(bc_fitted, bc_snapshot):
    rows, doc = bc_snapshot
    raw = rows[doc["inputColumns"]].iloc[:12].astype("float64")
    raw.iloc[1, 1] = np.nan  # texture: imputed by the fitted median
    expected = bc_fitted.model.named_steps["model"].predict(FeatureTransformer(doc).transform(raw)).tolist()
    instances = [[None if np.isnan(v) else float(v) for v in row] for row in raw.to_numpy()]
    app = make_app(bc_fitted.model)
    v1 = await post(app, {"instances": instances})
    v2 = await post(app, v2_body(instances), v2=True)
    records = await post(app, {"instances": [{k: v for k, v in zip(doc["inputColumns"], row) if v is not None}
                                             for row in instances]})
    assert v1.status_code == 200 and v1.json()["predictions"] == expected
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == expected
    assert records.status_code == 200 and records.json()["predictions"] == expected


async def test_given_pickled_pipeline_when_loaded_then_same_predictions(bc_fitted, bc_snapshot):
    rows, doc = bc_snapshot
    loaded = joblib.load(io.BytesIO(serialize_model(bc_fitted.model)))
    raw = rows[doc["inputColumns"]]
    assert np.array_equal(loaded.predict(raw), bc_fitted.model.predict(raw))


@pytest.mark.parametrize(("row", "message"), [
    ([14.0, None, 90.0, None], "request has missing (null) feature values and this model cannot impute them"),
    ([14.0, 20.0, -5.0, 600.0], "perimeter became missing, e.g. log1p of a value <= -1"),
])
async def test_given_values_the_pipeline_cannot_use_when_served_then_400_with_a_message_never_500(bc_fitted, row, message):
    app = make_app(bc_fitted.model)
    for response in (await post(app, {"instances": [row]}), await post(app, v2_body([row]), v2=True)):
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]


async def test_given_value_outside_the_feature_dtype_when_served_then_400_naming_the_feature(mixed):
    _, doc, fitted = mixed
    app = make_app(fitted.model)
    ok = await post(app, {"instances": [[14.0, None, 2, 1, None]]})
    fraction = await post(app, {"instances": [[14.0, 20.0, 2.5, 1, 3]]})
    not_bool = await post(app, {"instances": [[14.0, 20.0, 2, 7, 3]]})
    assert ok.status_code == 200, ok.text
    assert fraction.status_code == 400 and "feature 'grade' (dtype int)" in fraction.json()["error"]
    assert not_bool.status_code == 400 and "feature 'smoker' (dtype bool)" in not_bool.json()["error"]
