"""Training data: scikit-learn's bundled datasets, or a parquet/csv file on S3 with a target column.

Never downloads: the builtin datasets ship inside the scikit-learn wheel (``load_*``, not ``fetch_*``), so
training works in an offline cluster. Data is validated before fitting so a bad row becomes one clear
``InvalidInput`` naming the columns instead of a stack trace from deep inside an estimator. Imputation and
encoding are deliberately not done here: they are the FeatureSet's job, fitted once and shared with serving.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_operator.providers.storage import ArtifactStore, ObjectNotFound
from mlops_operator.runtime.train_config import Dataset, InvalidInput

# ModelVersion name -> scikit-learn loader (all bundled with the wheel, no network).
BUILTIN_DATASETS = {
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
}
MAX_NAMED_COLUMNS = 10


@dataclass(frozen=True)
class TrainingData:
    X: pd.DataFrame
    y: pd.Series
    source: str  # "builtin:iris" or the s3 URI, for lineage
    sha256: str  # of the file bytes, or of the builtin frame's contents


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
    fmt = dataset.format or {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(
        posixpath.splitext(dataset.uri)[1].lower())
    if fmt is None:
        raise InvalidInput(f"dataset.format is required: cannot tell parquet from csv by the name {dataset.uri!r}")
    try:
        raw = store.read_object(dataset.uri)
    except ValueError as exc:
        raise InvalidInput(f"dataset.uri: {exc}") from exc
    except ObjectNotFound as exc:
        raise InvalidInput(f"dataset.uri: {exc}") from exc
    X, y = split_target(frame_from_bytes(raw, fmt, dataset.uri), dataset.target, dataset.uri)
    return TrainingData(X, y, dataset.uri, hashlib.sha256(raw).hexdigest())


def load_dataset(store: ArtifactStore | None, dataset: Dataset) -> TrainingData:
    if dataset.builtin is not None:
        return load_builtin(dataset.builtin)
    if store is None:
        raise InvalidInput("dataset.uri needs S3 settings")
    return load_uri(store, dataset)


def check_training_data(X: pd.DataFrame, y: pd.Series) -> None:
    """Refuse what an estimator would choke on, naming the columns: text, NaN, ±inf, empty data."""
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
                           f"({int(bad.any(axis=1).sum())} rows); impute them with a FeatureSet")
    if y.isna().any():
        raise InvalidInput(f"target column {str(y.name)!r} has {int(y.isna().sum())} missing values")
    if pd.api.types.is_numeric_dtype(y) and not np.isfinite(y.to_numpy(dtype=float)).all():
        raise InvalidInput(f"target column {str(y.name)!r} has infinite values")
