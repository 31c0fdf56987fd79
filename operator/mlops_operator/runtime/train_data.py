"""Training data: scikit-learn's bundled datasets, a parquet/csv file on S3 with a target column, or a
FeatureSet snapshot (``features/<namespace>/<featureset>/<version>/``, read only through its verified manifest).

Never downloads: the builtin datasets ship inside the scikit-learn wheel (``load_*``, not ``fetch_*``), so
training works in an offline cluster. Data is validated before fitting so a bad row becomes one clear
``InvalidInput`` naming the columns instead of a stack trace from deep inside an estimator. Imputation and
encoding are deliberately not done here: they are the FeatureSet's job, fitted once and shared with serving.
A snapshot's rows stay RAW here (``X`` = its ``inputColumns``); its ``transform.json`` travels with them so
the trainer can put the fitted ``FeatureTransformer`` in front of the estimator.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from mlops_operator.features.transform import FORMAT as TRANSFORM_FORMAT
from mlops_operator.providers.storage import ArtifactStore, ObjectNotFound, S3Uri
from mlops_operator.runtime.train_config import Dataset, FeatureSetRef, InvalidInput

# ModelVersion name -> scikit-learn loader (all bundled with the wheel, no network).
BUILTIN_DATASETS = {
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
}
MAX_NAMED_COLUMNS = 10
# The snapshot files the trainer reads (written by ``mlops-materialize``; a unit test pins the names).
SNAPSHOT_DATA = "data.parquet"
FORMAT_BY_EXTENSION = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
SNAPSHOT_TRANSFORM = "transform.json"


@dataclass(frozen=True)
class TrainingData:
    X: pd.DataFrame
    y: pd.Series
    source: str  # "builtin:iris", the s3 URI, or "featureset:<name>/<version>", for lineage
    sha256: str  # of the file bytes (data.parquet for a snapshot), or of the builtin frame's contents
    transform: Mapping[str, Any] | None = None  # a snapshot's transform.json: X is raw, the model applies it
    feature_set: Mapping[str, str] | None = None  # {name, version, uri} of the snapshot
    labels: Mapping[str, Any] | None = None  # point-in-time labels: source, columns, as-of rule, join counts


def _frame_sha256(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()).hexdigest()


def load_builtin(name: str) -> TrainingData:
    import sklearn.datasets

    loader = BUILTIN_DATASETS.get(name)
    if loader is None:
        raise InvalidInput(f"unknown dataset.builtin {name!r}; available: {', '.join(sorted(BUILTIN_DATASETS))}")
    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame = bunch.frame
    return TrainingData(frame.drop(columns=["target"]), frame["target"], f"builtin:{name}", _frame_sha256(frame))


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:MAX_NAMED_COLUMNS])
    return shown + (f" and {len(columns) - MAX_NAMED_COLUMNS} more" if len(columns) > MAX_NAMED_COLUMNS else "")


def format_by_name(uri: str, given: str | None = None) -> str | None:
    """``given``, else the format the file name of ``uri`` tells (parquet or csv); None when neither says.

    >>> format_by_name("s3://b/rows.PQ"), format_by_name("s3://b/rows", "csv"), format_by_name("s3://b/rows.json")
    ('parquet', 'csv', None)
    """
    return given or FORMAT_BY_EXTENSION.get(posixpath.splitext(uri)[1].lower())


def frame_from_bytes(raw: bytes, fmt: str, where: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_csv(io.BytesIO(raw))
    except Exception as exc:  # pyarrow/pandas raise many types for a corrupt file
        raise InvalidInput(f"cannot read {where} as {fmt}: {type(exc).__name__}: {exc}") from exc


def split_target(df: pd.DataFrame, target: str, where: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in df.columns:
        raise InvalidInput(f"target column {target!r} not found in {where}; columns: {_names([str(c) for c in df.columns])}")
    X = df.drop(columns=[target])
    if X.shape[1] == 0:
        raise InvalidInput(f"{where} has no feature columns besides the target {target!r}")
    return X, df[target]


def load_uri(store: ArtifactStore, dataset: Dataset) -> TrainingData:
    assert dataset.uri is not None and dataset.target is not None  # guaranteed by Dataset validation
    frame, sha256 = read_file(store, dataset.uri, dataset.format, "dataset")
    X, y = split_target(frame, dataset.target, dataset.uri)
    return TrainingData(X, y, dataset.uri, sha256)


def load_dataset(store: ArtifactStore | None, dataset: Dataset) -> TrainingData:
    if dataset.builtin is not None:
        return load_builtin(dataset.builtin)
    if store is None:
        raise InvalidInput("dataset.uri needs S3 settings")
    return load_uri(store, dataset)


def snapshot_identity(doc: Mapping[str, Any], ref: FeatureSetRef, uri: str) -> tuple[str, str]:
    """(FeatureSet name, version) of a snapshot's ``transform.json``, checked against the reference.

    The document must belong to the FeatureSet (and the version, when pinned) the ModelVersion names:
    a prefix resolved to the wrong snapshot must not train silently on someone else's features.
    """
    if not isinstance(doc, Mapping) or doc.get("format") != TRANSFORM_FORMAT:
        shown = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
        raise InvalidInput(f"{uri}{SNAPSHOT_TRANSFORM} is not a {TRANSFORM_FORMAT} document (format {shown!r})")
    name, version = str(doc.get("featureSet")), str(doc.get("version"))
    if name != ref.name:
        raise InvalidInput(f"the snapshot at {uri} belongs to FeatureSet {name!r}, not {ref.name!r} "
                           "(training.featureSet.name)")
    if ref.version and version != ref.version:
        raise InvalidInput(f"the snapshot at {uri} is version {version!r} of FeatureSet {name!r}, "
                           f"but training.featureSet.version pins {ref.version!r}")
    return name, version


def snapshot_columns(frame: pd.DataFrame, doc: Mapping[str, Any], uri: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The snapshot's input columns, once its rows are known to hold them and the ``extra`` ones."""
    inputs = [str(c) for c in doc.get("inputColumns") or []]
    if not inputs:
        raise InvalidInput(f"the snapshot at {uri} lists no inputColumns in {SNAPSHOT_TRANSFORM}")
    absent = [c for c in [*inputs, *extra] if c not in frame.columns]
    if absent:
        raise InvalidInput(f"{uri}{SNAPSHOT_DATA} lacks column(s) {_names(absent)} that {SNAPSHOT_TRANSFORM} "
                           f"names; columns: {_names([str(c) for c in frame.columns])}")
    return inputs


def snapshot_training_data(frame: pd.DataFrame, doc: Mapping[str, Any], ref: FeatureSetRef, uri: str,
                           sha256: str) -> TrainingData:
    """Raw X (the snapshot's ``inputColumns``) and y (its target) from ``data.parquet`` + ``transform.json``."""
    name, version = snapshot_identity(doc, ref, uri)
    target = doc.get("target")
    if not target:
        raise InvalidInput(f"FeatureSet {doc.get('featureSet')} has no target column; set spec.target "
                           "(or train with training.featureSet.labels)")
    inputs = snapshot_columns(frame, doc, uri, (str(target),))
    return TrainingData(frame[inputs], frame[str(target)], f"featureset:{name}/{version}", sha256,
                        transform=doc, feature_set={"name": name, "version": version, "uri": uri})


def read_snapshot(store: ArtifactStore, uri: S3Uri) -> tuple[pd.DataFrame, Any, str]:
    """(rows, transform.json, sha256 of data.parquet) of a committed snapshot: every byte verified against
    its manifest (IntegrityError otherwise)."""
    manifest = store.read_manifest(uri)
    doc_bytes = store.fetch_verified(uri, SNAPSHOT_TRANSFORM, manifest)
    raw = store.fetch_verified(uri, SNAPSHOT_DATA, manifest)
    try:
        doc = json.loads(doc_bytes)
    except ValueError as exc:
        raise InvalidInput(f"{uri}{SNAPSHOT_TRANSFORM} is not valid JSON: {exc}") from exc
    return frame_from_bytes(raw, "parquet", f"{uri}{SNAPSHOT_DATA}"), doc, hashlib.sha256(raw).hexdigest()


def load_feature_set(store: ArtifactStore, ref: FeatureSetRef, uri: S3Uri) -> TrainingData:
    """Train on a committed snapshot's rows and target."""
    frame, doc, sha256 = read_snapshot(store, uri)
    return snapshot_training_data(frame, doc, ref, str(uri), sha256)


def read_file(store: ArtifactStore, uri: str, fmt: str | None, field: str) -> tuple[pd.DataFrame, str]:
    """(rows, sha256) of a parquet/csv object a spec field names; its problems are InvalidInput naming the field."""
    fmt = format_by_name(uri, fmt)
    if fmt is None:
        raise InvalidInput(f"{field}.format is required: cannot tell parquet from csv by the name {uri!r}")
    try:
        raw = store.read_object(uri)
    except (ValueError, ObjectNotFound) as exc:
        raise InvalidInput(f"{field}.uri: {exc}") from exc
    return frame_from_bytes(raw, fmt, uri), hashlib.sha256(raw).hexdigest()


def check_training_data(X: pd.DataFrame, y: pd.Series,
                        remedy: str = "impute them with a FeatureSet") -> None:
    """Refuse what an estimator would choke on, naming the columns: text, NaN, ±inf, empty data.

    For a FeatureSet snapshot, ``X`` is the TRANSFORMED matrix (what the estimator sees), so values the
    fitted imputation fills are fine and only those it leaves missing (``impute: none``) are refused."""
    if len(X) < 2:
        raise InvalidInput(f"need at least 2 rows to train, got {len(X)}")
    non_numeric = [str(c) for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
    if non_numeric:
        raise InvalidInput(f"non-numeric feature column(s) {_names(non_numeric)}: encode them with a FeatureSet "
                           "(transform: onehot) before training")
    values = X.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [str(c) for c, n in zip(X.columns, bad.sum(axis=0)) if n]
        raise InvalidInput(f"NaN or infinite values in feature column(s) {_names(cols)} "
                           f"({int(bad.any(axis=1).sum())} rows); {remedy}")
    if y.isna().any():
        raise InvalidInput(f"target column {str(y.name)!r} has {int(y.isna().sum())} missing values")
    if pd.api.types.is_numeric_dtype(y) and not np.isfinite(y.to_numpy(dtype=float)).all():
        raise InvalidInput(f"target column {str(y.name)!r} has infinite values")
