"""``mlops-train`` with ``MLOPS_BASELINE`` against the real MinIO: the stable version, committed by a real
training run, is scored on the challenger's own test rows, and metrics.json's ``baseline`` equals scoring that
stable version in-process on those very rows."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import joblib
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from mlops_operator.providers.storage import ArtifactStore
from test_storage_minio import empty_prefix
from test_train_minio import RF, _put_frame, run_train, version_prefix  # noqa: F401

pytestmark = pytest.mark.integration

# The challenger: a weak model on ANOTHER split than the stable version's (seed 7 vs 42), so the stable
# version's same-rows score is not the one it recorded at its own training.
WEAK = {**RF, "estimator": "sklearn.linear_model.LogisticRegression", "hyperparameters": {"max_iter": 3},
        "split": {"testFraction": 0.25, "seed": 7, "stratify": True}}


@pytest.fixture()
def stable(s3_env, store, tmp_path) -> Iterator[dict]:  # noqa: F811
    """A stable version committed by a real training run: ``{version, uri, sha256, summary}``."""
    prefix = f"s3://{s3_env['S3_BUCKET']}/models/it-train/stable-{uuid.uuid4().hex[:12]}/"
    run = run_train(s3_env, prefix, RF, tmp_path)
    assert run.code == 0, run.stderr
    yield {"version": prefix.rstrip("/").rsplit("/", 1)[1], "uri": prefix,
           "sha256": run.termination["artifact"]["modelSha256"], "summary": run.termination}
    empty_prefix(store, prefix)


def _baseline_env(ref: dict) -> str:
    return json.dumps({k: ref[k] for k in ("version", "uri", "sha256")})


def _report(store: ArtifactStore, prefix: str) -> dict:  # noqa: F811
    return json.loads(store.fetch_verified(prefix, "metrics.json"))


def test_given_a_committed_stable_version_when_the_challenger_trains_then_baseline_scores_equal_in_process_scoring(
        s3_env, store, stable, version_prefix, tmp_path):  # noqa: F811
    run = run_train(s3_env, version_prefix, WEAK, tmp_path, MLOPS_BASELINE=_baseline_env(stable))
    assert run.code == 0, run.stderr
    assert f"loading stable version {stable['version']}" in run.stdout
    report = _report(store, version_prefix)
    baseline = report["baseline"]
    assert baseline["version"] == stable["version"] and baseline["uri"] == stable["uri"]
    assert "reason" not in baseline, baseline

    # In process: the challenger's split (seed 7, 25 %, stratified) of the same data, the stable model
    # loaded from its verified bytes, the metrics computed directly with scikit-learn.
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.25, random_state=7, stratify=y)
    model = joblib.load(io.BytesIO(store.fetch_verified(stable["uri"], "model.joblib")))
    expected = {"accuracy": accuracy_score(y_test, model.predict(X_test)),
                "f1_macro": f1_score(y_test, model.predict(X_test), average="macro"),
                "roc_auc": roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])}
    assert baseline["rows"] == len(X_test) == report["data"]["testRows"] == 143
    assert baseline["metrics"] == pytest.approx(expected, abs=1e-12)
    # Not the numbers the stable version recorded on its own test rows (seed 42): this is the fair one.
    assert baseline["metrics"] != stable["summary"]["metrics"]
    # Both scores come from the same rows: the challenger's own metrics use the same y_test.
    assert report["data"]["split"]["seed"] == 7


@pytest.mark.parametrize("tamper, why", [
    ("sha256", "IntegrityError"),   # the pin the operator passed does not match what is committed there
    ("uri", "cannot load stable version"),  # nothing committed at that prefix
])
def test_given_a_stable_version_that_cannot_be_loaded_when_trained_then_the_reason_is_recorded_and_training_commits(
        s3_env, store, stable, version_prefix, tmp_path, tamper, why):  # noqa: F811
    ref = {**stable, "sha256": "0" * 64} if tamper == "sha256" else {**stable, "uri": stable["uri"] + "nothing-here/"}
    run = run_train(s3_env, version_prefix, WEAK, tmp_path, MLOPS_BASELINE=_baseline_env(ref))
    assert run.code == 0, run.stderr
    baseline = _report(store, version_prefix)["baseline"]
    assert why in baseline["reason"] and "metrics" not in baseline, baseline
    assert baseline["version"] == stable["version"]


def test_given_a_stable_version_with_other_input_columns_when_trained_then_not_scored_with_the_reason(
        s3_env, store, stable, version_prefix, tmp_path):  # noqa: F811
    data = f"s3://{s3_env['S3_BUCKET']}/tests/datasets/{uuid.uuid4().hex}/renamed.parquet"
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    frame = X.rename(columns=lambda c: c.replace(" ", "_")).assign(label=y)
    _put_frame(store, data, frame)
    try:
        training = {**WEAK, "dataset": {"uri": data, "target": "label"}}
        run = run_train(s3_env, version_prefix, training, tmp_path, MLOPS_BASELINE=_baseline_env(stable))
    finally:
        empty_prefix(store, data.rsplit("/", 1)[0] + "/")
    assert run.code == 0, run.stderr
    baseline = _report(store, version_prefix)["baseline"]
    assert "reads input column(s) 'mean radius'" in baseline["reason"], baseline


def test_given_a_regression_stable_version_when_a_classifier_trains_then_not_scored_with_the_reason(
        s3_env, store, version_prefix, tmp_path):  # noqa: F811
    prefix = f"s3://{s3_env['S3_BUCKET']}/models/it-train/ridge-{uuid.uuid4().hex[:12]}/"
    data = f"s3://{s3_env['S3_BUCKET']}/tests/datasets/{uuid.uuid4().hex}/d.parquet"
    try:
        _put_frame(store, data, load_diabetes(as_frame=True).frame)
        ridge = {"dataset": {"uri": data, "target": "target"}, "estimator": "sklearn.linear_model.Ridge",
                 "metrics": ["r2"]}
        committed = run_train(s3_env, prefix, ridge, tmp_path)
        assert committed.code == 0, committed.stderr
        ref = {"version": "ridge", "uri": prefix, "sha256": committed.termination["artifact"]["sha256"]}  # manifest pin
        run = run_train(s3_env, version_prefix, WEAK, tmp_path, MLOPS_BASELINE=json.dumps(ref))
    finally:
        empty_prefix(store, prefix)
        empty_prefix(store, data.rsplit("/", 1)[0] + "/")
    assert run.code == 0, run.stderr
    assert "is a regression model and this version a classification model" in \
        _report(store, version_prefix)["baseline"]["reason"]


def test_given_a_malformed_baseline_env_when_trained_then_exit_2_and_nothing_written(
        s3_env, version_prefix, tmp_path, store):  # noqa: F811
    run = run_train(s3_env, version_prefix, WEAK, tmp_path, MLOPS_BASELINE='{"version": "v1"}')
    assert run.code == 2 and "MLOPS_BASELINE needs a version and a uri" in run.stderr
    assert not store.has_manifest(version_prefix)



def test_given_a_committed_challenger_when_the_gate_rereads_its_report_then_the_baseline_record_is_there(
        s3_env, store, stable, version_prefix, tmp_path):  # noqa: F811
    from mlops_operator.handlers.observe import read_report

    assert run_train(s3_env, version_prefix, WEAK, tmp_path, MLOPS_BASELINE=_baseline_env(stable)).code == 0
    check = read_report(store, version_prefix)
    assert check.problem is None and check.report["baseline"]["version"] == stable["version"]
    assert check.report["baseline"] == _report(store, version_prefix)["baseline"]
    missing = read_report(store, version_prefix + "nothing-here/")
    assert (missing.problem, missing.reason) == ("integrity", "ManifestMissing")
    loc = store.location(version_prefix)  # a tampered report: the gate must not read a verdict from it
    key = loc.key + store.read_manifest(version_prefix)["attempt"] + "/metrics.json"
    store._client.put_object(Bucket=loc.bucket, Key=key, Body=b'{"baseline": {"version": "forged"}}')
    tampered = read_report(store, version_prefix)
    assert (tampered.problem, tampered.reason) == ("integrity", "ChecksumMismatch") and tampered.report is None
