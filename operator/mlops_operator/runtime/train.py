"""``mlops-train``: train one ModelVersion and commit its artifacts to S3. Runs as the training Job.

Environment (set by the operator's Job builder):

==========================  ==========================================================================
``MLOPS_MODEL``             registry key (ModelVersion ``spec.model``)
``MLOPS_MODEL_VERSION``     the ModelVersion's name
``MLOPS_TRAINING``          ``spec.training`` as JSON, camelCase as in the CRD
``MLOPS_ARTIFACT_PREFIX``   ``s3://<bucket>/models/<namespace>/<model>/<modelversion>/``
``MLOPS_FEATURESET_URI``    with ``training.featureSet``: the resolved snapshot prefix
                            ``s3://<bucket>/features/<namespace>/<featureset>/<version>/`` (required then)
``MLOPS_OWNER``             ``{"namespace", "kind", "name", "uid"}`` of the ModelVersion (in the manifest)
``MLOPS_SPEC_HASH``         hash of the spec trained from (in the manifest: tells a re-apply from a reuse)
``MLOPS_BASELINE``          optional, with ``gates.mustBeatStable``: ``{"version", "uri", "sha256"}`` of the
                            ModelDeployment's stable version, scored on this version's test rows
                            (``metrics.json`` ``baseline``; see ``runtime.train_baseline``)
``S3_ENDPOINT_URL``         S3/MinIO endpoint (unset = AWS)
``AWS_ACCESS_KEY_ID``       from a Secret, never logged
``AWS_SECRET_ACCESS_KEY``   from a Secret, never logged
``AWS_REGION``              optional, default us-east-1
``S3_BUCKET``               optional; the bucket comes from ``MLOPS_ARTIFACT_PREFIX``
``MLOPS_TERMINATION_LOG``   optional, default ``/dev/termination-log``
==========================  ==========================================================================

Exit codes (the operator maps them to conditions; all but 1 are deliberate outcomes):

* ``0`` trained and committed; the termination log holds the JSON summary (artifact, metrics, ...).
* ``2`` invalid input (estimator not allowed, unknown hyperparameter, missing target column, NaN/inf in
  the data, unknown metric, ...). Retrying cannot help. One line ``ERROR: ...`` on stderr.
* ``3`` storage error (endpoint down, access denied, ...). May succeed later / after a credentials fix.
* ``4`` the version already has a committed manifest (e.g. a retried Job after success). Nothing was
  written; the existing ``metrics.json`` is the result.
* ``1`` unexpected internal error (a bug): traceback on stderr.

With ``training.featureSet`` the snapshot is read through its manifest (every byte sha256-verified), X is
its RAW ``inputColumns`` and y its target, and the saved model is
``Pipeline([("features", FeatureTransformer(transform.json)), ("model", estimator)])``: the server feeds
raw rows to the very transform fitted at materialize time. Signature and drift reference describe the raw
inputs; ``metrics.json`` records ``data.source: featureset:<name>/<version>``, ``data.sha256`` (of
data.parquet) and ``data.featureSet: {name, version, uri}``.

With ``training.featureSet.labels`` the labels file is joined with the snapshot's feature history as of
each label's event time (``runtime.train_pointintime``): y is the label column, ``metrics.json`` records
``data.labels: {source, sha256, columns, maxAge, asOf, labels, joined, dropped}``, and a join that leaves
no row fails with reason ``NoLabelsJoined`` in the termination log (exit 2: the operator's
``InvalidTrainingInput``, the message naming the causes).

With ``MLOPS_BASELINE`` the stable version is loaded (verified, as the server loads it) before training and
scored with the same metrics on the same test rows after it: ``metrics.json`` records ``baseline: {version,
uri, rows, metrics, warnings}``, or ``{version, uri, rows, reason}`` when it cannot be loaded or scored (the
gate then fails closed). An unreachable S3 endpoint while loading it is exit 3, like any storage error.

After fitting, the model is compiled to ONNX and checked against itself on the test rows
(``runtime.train_compile``): ``model.onnx`` is committed with the other files only when the compiled form
answers like the model; ``metrics.json`` ``compiled`` records the outcome (and why not, when it is not).

On every exit the termination log holds ``{"result": "Failed", "reason", "message", "exitCode"}``
or the success summary (at most 4096 bytes, what the kubelet keeps).
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable

from mlops_operator.providers.storage import (
    AlreadyExistsError,
    ArtifactStore,
    encode_manifest,
    sha256_hex,
)
from mlops_operator.runtime import train_artifacts as art
from mlops_operator.runtime.job_main import classify, run_job
from mlops_operator.runtime.train_baseline import load_baseline, score_baseline
from mlops_operator.runtime.train_compile import ONNX_FILE, compile_model
from mlops_operator.runtime.train_config import (
    InvalidInput,
    TrainConfig,
    Training,
    load_config,
    no_feature_set_uri,
)
from mlops_operator.runtime.train_data import TrainingData, check_training_data, load_dataset, load_feature_set
from mlops_operator.runtime.train_estimator import build_estimator, effective_parameters
from mlops_operator.runtime.train_metrics import CLASSIFICATION, compute_metrics, select_metrics, task_of
from mlops_operator.runtime.train_pointintime import NoLabelsJoined, load_point_in_time

log = logging.getLogger("mlops.train")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INVALID_INPUT = 2
EXIT_STORAGE = 3
EXIT_ALREADY_EXISTS = 4

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _split(training: Any, X: Any, y: Any, task: str) -> tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    stratify = y if (training.split.stratify and task == CLASSIFICATION) else None
    try:
        return train_test_split(X, y, test_size=training.split.test_fraction,
                                random_state=training.split.seed, stratify=stratify)
    except ValueError as exc:
        raise InvalidInput(f"cannot split the data (training.split): {exc}") from exc


def _fit(model: Any, X: Any, y: Any, label: str) -> list[str]:
    """Fit; data/parameter mismatches sklearn only finds now become InvalidInput. Returns warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, y)
        except InvalidInput:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"fitting {label} failed: {exc}") from exc
    return list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))[:10]


def _load(cfg: TrainConfig, store: ArtifactStore) -> TrainingData:
    training = cfg.training
    if training.feature_set is not None:
        if cfg.feature_set_uri is None:
            raise no_feature_set_uri(training.feature_set)
        log.info("loading FeatureSet %s snapshot %s...", training.feature_set.name, cfg.feature_set_uri)
        if training.feature_set.labels is not None:
            return load_point_in_time(store, training.feature_set, cfg.feature_set_uri)
        return load_feature_set(store, training.feature_set, cfg.feature_set_uri)
    assert training.dataset is not None  # Training validation: exactly one of featureSet | dataset
    log.info("loading dataset %s...", training.dataset.builtin or training.dataset.uri)
    return load_dataset(store, training.dataset)


def compose(estimator: Any, data: TrainingData) -> Any:
    """The model to fit and save: the estimator, behind the snapshot's fitted transform if there is one."""
    if data.transform is None:
        return estimator
    from sklearn.pipeline import Pipeline

    from mlops_operator.features.transform import FeatureTransformer

    return Pipeline([("features", FeatureTransformer(data.transform)), ("model", estimator)])


def check_model_input(model: Any, data: TrainingData) -> None:
    """``check_training_data`` on what the ESTIMATOR will see: for a snapshot, the transformed matrix, so
    missing raw values the fitted imputation fills pass and only those left missing are refused."""
    if data.transform is None:
        return check_training_data(data.X, data.y)
    import pandas as pd

    features = model.named_steps["features"]
    matrix = pd.DataFrame(features.transform(data.X), columns=[str(c) for c in features.get_feature_names_out()])
    name = data.feature_set["name"] if data.feature_set else "?"
    check_training_data(matrix, data.y, remedy=f"set impute for these features in FeatureSet {name} "
                                               "(impute: none leaves missing values missing)")


def _signature_and_reference(data: TrainingData, X_train: Any, test_pred: Any,
                             task: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(signature, reference.json, warnings), both describing the RAW input columns the server receives."""
    from mlops_operator.drift.reference import reference_stats

    classification = task == CLASSIFICATION
    if data.transform is None:
        # Features profiled on the training split; predictions on the held-out split, because live traffic
        # is unseen data too (training-set predictions of a forest are its memorised labels).
        reference = reference_stats(X_train, [str(c) for c in X_train.columns], predictions=test_pred,
                                    predictions_categorical=classification)
        return art.build_signature(X_train, test_pred), reference, []
    signature = art.build_signature(X_train, test_pred, art.feature_dtypes(data.transform))
    reference, skipped = art.raw_reference(X_train, data.transform, test_pred, classification)
    notes = [f"drift reference: category feature(s) {', '.join(skipped)} not profiled "
             "(requests carry numbers only)"] if skipped else []
    return signature, reference, notes


@dataclass(frozen=True)
class Fitted:
    """What one fit produced: the model to save and everything ``metrics.json``/``reference.json`` need."""

    model: Any  # the estimator, or Pipeline(FeatureTransformer, estimator) for a snapshot
    metrics: dict[str, float | None]
    warnings: list[str]
    signature: dict[str, Any]
    reference: dict[str, Any]
    train_rows: int
    test_rows: int
    X_test: Any = None  # the held-out rows the metrics come from (a stable version is scored on them too)
    y_test: Any = None


def fit_evaluate(training: Training, estimator: Any, task: str, metric_names: list[str],
                 data: TrainingData) -> Fitted:
    """Check, split, fit and evaluate (no I/O): the part of ``train`` a unit test can run on any data."""
    model = compose(estimator, data)
    check_model_input(model, data)
    X_train, X_test, y_train, y_test = _split(training, data.X, data.y, task)

    label = type(estimator).__name__
    log.info("fitting %s on %d rows (%d features)...", label, len(X_train), X_train.shape[1])
    fit_warnings = _fit(model, X_train, y_train, label)
    for w in fit_warnings:
        log.warning("%s", w)
    metrics, metric_warnings = compute_metrics(metric_names, model, X_test, y_test)
    log.info("metrics on %d test rows: %s", len(X_test), metrics)
    test_pred = model.predict(X_test)
    signature, reference, notes = _signature_and_reference(data, X_train, test_pred, task)
    return Fitted(model, metrics, fit_warnings + metric_warnings + notes, signature, reference,
                  len(X_train), len(X_test), X_test, y_test)


def train(cfg: TrainConfig, store: ArtifactStore, now: Clock = _utcnow) -> dict[str, Any]:
    """Train and commit one version; return the success summary. Raises InvalidInput / StorageError."""
    from sklearn import __version__ as sklearn_version

    started = now()
    prefix = cfg.artifact_prefix
    log.info("training %s/%s into %s", cfg.model, cfg.model_version, prefix)
    training = cfg.training
    if training.feature_set is not None and cfg.feature_set_uri is None:
        raise no_feature_set_uri(training.feature_set)
    # Spec errors first (no I/O), so a bad spec is reported as such whatever the state of S3.
    estimator = build_estimator(training.estimator, training.hyperparameters)
    task = task_of(estimator)
    metric_names = select_metrics(training.metrics, task, estimator)
    if store.has_manifest(prefix):  # cheap early exit for a retried Job; write_version re-checks atomically
        raise AlreadyExistsError(f"{prefix} already has a committed manifest; versions are immutable")

    # The stable version to beat is loaded before any training is spent (an unreachable S3 fails fast).
    stable = load_baseline(store, cfg.baseline) if cfg.baseline is not None else None
    data = _load(cfg, store)
    fitted = fit_evaluate(training, estimator, task, metric_names, data)
    baseline = score_baseline(stable, metric_names, task, fitted.X_test, fitted.y_test) if stable else None
    compiled = compile_model(fitted.model, fitted.X_test)
    finished = now()
    metrics_doc = {
        "model": cfg.model,
        "modelVersion": cfg.model_version,
        "task": task,
        "estimator": training.estimator,
        "metrics": fitted.metrics,
        "parameters": effective_parameters(estimator),  # the estimator's own, not the pipeline's
        "signature": fitted.signature,
        "classes": [c.item() if hasattr(c, "item") else c for c in getattr(fitted.model, "classes_", [])],
        "data": {"source": data.source, "sha256": data.sha256, "rows": len(data.X),
                 "trainRows": fitted.train_rows, "testRows": fitted.test_rows,
                 "split": training.split.model_dump(by_alias=True),
                 **({"featureSet": dict(data.feature_set)} if data.feature_set else {}),
                 **({"labels": dict(data.labels)} if data.labels else {})},
        "runtime": {"sklearn": sklearn_version, "python": sys.version.split()[0]},
        "warnings": fitted.warnings,
        **({"baseline": baseline} if baseline is not None else {}),
        "compiled": compiled.report,
        "startedAt": art.iso_utc(started),
        "finishedAt": art.iso_utc(finished),
    }
    files = {
        art.MODEL_FILE: art.serialize_model(fitted.model),
        art.MLMODEL_FILE: art.build_mlmodel(fitted.signature, art.model_uuid(cfg.model, cfg.model_version),
                                            finished, sklearn_version),
        art.METRICS_FILE: art.to_json(metrics_doc),
        art.REFERENCE_FILE: art.to_json(fitted.reference),
        **({ONNX_FILE: compiled.onnx} if compiled.onnx is not None else {}),
    }
    manifest = store.write_version(prefix, files, now=finished, owner=cfg.owner, spec_hash=cfg.spec_hash)
    summary = art.build_summary(str(prefix), sha256_hex(encode_manifest(manifest)), manifest, metrics_doc)
    log.info("uploaded %s (manifest sha256 %s)", prefix, summary["artifact"]["sha256"])
    return summary


def _outcome(exc: BaseException) -> tuple[int, str]:
    return classify(exc, ((AlreadyExistsError, EXIT_ALREADY_EXISTS, "AlreadyExists"),
                          (NoLabelsJoined, EXIT_INVALID_INPUT, "NoLabelsJoined")))


def main(argv: list[str] | None = None) -> int:
    return run_job(lambda: train(load_config(), ArtifactStore.from_settings()), _outcome,
                   lambda reason, message, code, _exc: art.failure_summary(reason, message, code), art.compact)


if __name__ == "__main__":
    sys.exit(main())
