"""The fitted feature transform of a snapshot: fitted once at materialize time, applied identically later.

``fit_transform_doc`` fits imputation and transform parameters on the snapshot rows and returns the
``transform.json`` document; ``FeatureTransformer(doc)`` applies it. The trainer pickles
``Pipeline([("features", FeatureTransformer(doc)), ("model", estimator)])``, so the server applies the very
same fitted parameters to raw request rows: no training/serving skew, and nothing is refitted later.

Per feature, in this order: convert to the dtype (``features.dtypes``), impute, transform.
Imputation comes first, so the transform statistics (standardize mean/std, minmax min/max) are fitted on
the imputed column; values still missing (impute ``none``) are left out of every statistic and stay NaN.

Encodings (one or more float64 output columns per feature):

* ``none``: the value (bool as 0/1); a category needs ``onehot`` (refused at fit time).
* ``standardize``: ``(x - mean) / std`` (population std; a constant column gets scale 1).
* ``minmax``: ``(x - min) / (max - min)`` (a constant column maps to 0).
* ``log1p``: ``log(1 + x)``; values <= -1 are refused at fit time and become NaN at transform time.
* ``bucketize``: ONE column, the bucket index ``np.digitize(x, boundaries)`` as a float: 0 below the first
  boundary, i for ``boundaries[i-1] <= x < boundaries[i]``, ``len(boundaries)`` from the last one on.
* ``onehot``: one column ``"<name>=<category>"`` per fitted category (sorted as text); an unknown or missing
  value gives all zeros. With impute ``missing_category`` the ``__missing__`` column always exists.

Under quality policy ``impute``, a feature with checks and no ``impute`` gets median (float/int) or
most_frequent (bool/category), so the values the policy blanked are filled (``default_strategy``).

KNN imputation uses scikit-learn's ``KNNImputer`` over every float/int feature, fitted on at most
``KNN_MAX_SAMPLE`` rows stored in the document, so a transformer rebuilt from JSON imputes identically.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlops_operator.api.v1alpha1.featureset import ROW_KEY, FeatureSetSpec, FeatureSpec
from mlops_operator.errors import InvalidInput
from mlops_operator.features.dtypes import (
    MISSING_CATEGORY,
    FeatureValueError,
    as_text,
    convert,
    convert_scalar,
    present_mask,
)

FORMAT = "mlops.dev/feature-transform/v1"
KNN_MAX_SAMPLE = 500
KNN_NEIGHBORS = 5
KNN_SEED = 0
MAX_ONEHOT_CATEGORIES = 256
MAX_LISTED = 10


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def resolve_features(spec: FeatureSetSpec, columns: Sequence[str]) -> list[FeatureSpec]:
    """``spec.features``, or every column except entityKey (or ``__row__``)/timestampColumn/target as a
    float feature with no transform."""
    if spec.features:
        return list(spec.features)
    reserved = {spec.entity_key or ROW_KEY, spec.timestamp_column, spec.target}
    return [FeatureSpec(name=str(c)) for c in columns if str(c) not in reserved]


def check_columns(features: Sequence[FeatureSpec], columns: Sequence[str], where: str) -> None:
    absent = [f.name for f in features if f.name not in set(columns)]
    if absent:
        raise InvalidInput(f"feature column(s) {_listing(absent)} not found in {where}; "
                           f"available columns: {_listing([str(c) for c in columns])}")


# --- fitting ------------------------------------------------------------------------------------------

def _present(col: np.ndarray) -> np.ndarray:
    return col[present_mask(col)]


def _most_frequent(values: np.ndarray, dtype: str) -> Any:
    """Most frequent value; ties go to the smallest as text, so the choice never depends on row order."""
    counts = pd.Series(values).value_counts(sort=False)
    best = min(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]
    return best if dtype == "category" else float(best)


def policy_of(quality_policy: Any) -> str:
    """``spec.qualityPolicy.onViolation``, ``fail`` when absent."""
    return str(quality_policy.on_violation) if quality_policy is not None else "fail"


def default_strategy(f: FeatureSpec, policy: str) -> str:
    """Under quality policy ``impute`` a checked feature without ``impute`` still gets its violating values
    filled: median (float/int) or most_frequent (bool/category). An explicit ``strategy: none`` is kept."""
    if f.impute is not None:
        return str(f.impute.strategy)
    checks = f.checks
    checked = checks is not None and (checks.min, checks.max, checks.allowed_values) != (None, None, None)
    if policy == "impute" and checked:
        return "median" if str(f.dtype) in ("float", "int") else "most_frequent"
    return "none"


def _fit_impute(f: FeatureSpec, col: np.ndarray, policy: str) -> dict[str, Any]:
    strategy = default_strategy(f, policy)
    if strategy in ("none", "knn"):
        return {"strategy": strategy}
    if strategy == "constant":
        return {"strategy": strategy, "value": convert_scalar(f.impute.value or "", f.name, str(f.dtype))}
    if strategy == "missing_category":
        return {"strategy": strategy, "value": MISSING_CATEGORY}
    present = _present(col)
    if len(present) == 0:
        raise InvalidInput(f"feature {f.name!r} has no values to fit impute.strategy {strategy} on (all missing)")
    if strategy == "mean":
        return {"strategy": strategy, "value": float(np.mean(present))}
    if strategy == "median":
        return {"strategy": strategy, "value": float(np.median(present))}
    return {"strategy": strategy, "value": _most_frequent(present, str(f.dtype))}


def _fit_encoding(f: FeatureSpec, col: np.ndarray, impute: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    kind = str(f.transform)
    if kind == "onehot":
        cats = {c for c in as_text(col, str(f.dtype)) if c is not None}
        if impute["strategy"] == "missing_category":
            cats.add(MISSING_CATEGORY)
        if len(cats) > MAX_ONEHOT_CATEGORIES:
            raise InvalidInput(f"feature {f.name!r} has {len(cats)} distinct values; onehot supports at most "
                               f"{MAX_ONEHOT_CATEGORIES}")
        categories = sorted(cats)
        return {"kind": kind, "categories": categories}, [f"{f.name}={c}" for c in categories]
    if str(f.dtype) == "category":
        raise InvalidInput(f"feature {f.name!r} has dtype category: transform {kind} cannot make it a number; "
                           "use transform onehot")
    present = _present(col)
    if kind in ("standardize", "minmax") and len(present) == 0:
        raise InvalidInput(f"feature {f.name!r} has no values to fit transform {kind} on (all missing)")
    if kind == "standardize":
        std = float(np.std(present))
        return {"kind": kind, "mean": float(np.mean(present)), "scale": std if std > 0 else 1.0}, [f.name]
    if kind == "minmax":
        lo, hi = float(np.min(present)), float(np.max(present))
        return {"kind": kind, "min": lo, "scale": (hi - lo) if hi > lo else 1.0}, [f.name]
    if kind == "log1p":
        below = present[present <= -1]
        if len(below):
            raise InvalidInput(f"feature {f.name!r}: transform log1p needs values above -1, but {len(below)} "
                               f"value(s) are -1 or less (smallest {float(below.min()):g})")
        return {"kind": kind}, [f.name]
    if kind == "bucketize":
        return {"kind": kind, "boundaries": [float(b) for b in f.boundaries or []]}, [f.name]
    return {"kind": "none"}, [f.name]


def _knn_columns(features: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f["name"] for f in features if f["dtype"] in ("float", "int")]


def _fit_knn(entries: Sequence[Mapping[str, Any]], raw: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    targets = [e["name"] for e in entries if e["impute"]["strategy"] == "knn"]
    if not targets:
        return None
    columns = _knn_columns(entries)
    matrix = np.column_stack([raw[c] for c in columns])
    rows = np.arange(len(matrix))
    if len(rows) > KNN_MAX_SAMPLE:  # a fixed seed: the same snapshot always stores the same sample
        rows = np.sort(np.random.default_rng(KNN_SEED).choice(rows, KNN_MAX_SAMPLE, replace=False))
    sample = matrix[rows]
    for name in targets:
        if np.isnan(sample[:, columns.index(name)]).all():
            raise InvalidInput(f"feature {name!r} has no values to fit impute.strategy knn on (all missing)")
    return {
        "columns": columns,
        "neighbors": int(min(KNN_NEIGHBORS, len(sample))),
        "sample": [[None if np.isnan(v) else float(v) for v in row] for row in sample],
    }


def fit_transform_doc(spec: FeatureSetSpec, frame: pd.DataFrame, *, feature_set: str, version: str,
                      feature_set_uid: str | None = None) -> dict[str, Any]:
    """Fit imputation and transforms on ``frame`` (the snapshot rows) and return the transform.json doc."""
    features = resolve_features(spec, [str(c) for c in frame.columns])
    if not features:
        raise InvalidInput(f"FeatureSet {feature_set!r} has no feature columns")
    check_columns(features, [str(c) for c in frame.columns], "the snapshot")
    raw = {f.name: convert(frame[f.name], f.name, str(f.dtype)) for f in features}
    policy = policy_of(spec.quality_policy)
    entries: list[dict[str, Any]] = [
        {"name": f.name, "dtype": str(f.dtype), "impute": _fit_impute(f, raw[f.name], policy)} for f in features
    ]
    knn = _fit_knn(entries, raw)
    filled = _knn_fill(knn, raw)
    for f, entry in zip(features, entries):
        col = _impute(entry["impute"], raw[f.name], filled.get(f.name))
        entry["transform"], entry["outputs"] = _fit_encoding(f, col, entry["impute"])
    outputs = [name for e in entries for name in e["outputs"]]
    duplicated = sorted({n for n in outputs if outputs.count(n) > 1})
    if duplicated:
        raise InvalidInput(f"output column name(s) {_listing(duplicated)} would appear twice; rename a feature")
    return {
        "format": FORMAT,
        "featureSet": feature_set,
        "featureSetUid": feature_set_uid,
        "version": version,
        "target": spec.target,
        "entityKey": spec.entity_key,
        "timestampColumn": spec.timestamp_column,
        "rows": int(len(frame)),
        "inputColumns": [f.name for f in features],
        "outputColumns": outputs,
        "features": entries,
        "knn": knn,
    }


# --- applying (shared by fit and transform, so both paths compute the same thing) --------------------

def _build_knn(knn: Mapping[str, Any]) -> Any:
    from sklearn.impute import KNNImputer

    sample = np.array([[np.nan if v is None else v for v in row] for row in knn["sample"]], dtype="float64")
    return KNNImputer(n_neighbors=knn["neighbors"], keep_empty_features=True).fit(sample)


def _knn_fill(knn: Mapping[str, Any] | None, raw: Mapping[str, np.ndarray],
              imputer: Any = None) -> dict[str, np.ndarray]:
    if knn is None:
        return {}
    imputer = imputer if imputer is not None else _build_knn(knn)
    matrix = np.column_stack([raw[c] for c in knn["columns"]])
    if not np.isnan(matrix).any():
        return {}
    done = imputer.transform(matrix)
    return {c: done[:, i] for i, c in enumerate(knn["columns"])}


def _impute(impute: Mapping[str, Any], col: np.ndarray, knn_col: np.ndarray | None) -> np.ndarray:
    strategy = impute["strategy"]
    if strategy == "none" or (strategy == "knn" and knn_col is None):
        return col
    if strategy == "knn":
        return knn_col
    out = col.copy()
    if col.dtype == object:
        out[np.array([v is None for v in col], dtype=bool)] = impute["value"]
    else:
        out[np.isnan(col)] = impute["value"]
    return out


def _encode(transform: Mapping[str, Any], col: np.ndarray, dtype: str) -> np.ndarray:
    kind = transform["kind"]
    if kind == "onehot":
        categories = transform["categories"]
        codes = pd.Categorical(as_text(col, dtype), categories=categories).codes
        out = np.zeros((len(col), len(categories)), dtype="float64")
        hit = codes >= 0
        out[np.nonzero(hit)[0], codes[hit]] = 1.0
        return out
    x = col.astype("float64")
    if kind == "standardize":
        x = (x - transform["mean"]) / transform["scale"]
    elif kind == "minmax":
        x = (x - transform["min"]) / transform["scale"]
    elif kind == "log1p":
        with np.errstate(invalid="ignore"):
            x = np.log1p(np.where(x > -1, x, np.nan))  # NaN in, NaN out; -1 or less (only at serving) too
    elif kind == "bucketize":
        x = np.where(np.isnan(x), np.nan, np.digitize(x, transform["boundaries"]).astype("float64"))
    return x.reshape(-1, 1)


class FeatureTransformer(TransformerMixin, BaseEstimator):
    """An already fitted transform: ``FeatureTransformer(doc)`` with ``doc`` from ``transform.json``.

    ``fit`` is a no-op (the parameters were fitted on the snapshot). Pickles as just the document; the
    KNN imputer is rebuilt from the stored sample on first use.
    """

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc

    # sklearn: "fitted" from construction, so Pipeline/check_is_fitted accept it without fit.
    def __sklearn_is_fitted__(self) -> bool:
        return True

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_knn_imputer", None)
        return state

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # the doc can hold a KNN sample: name it, not print it
        d = self.doc
        return (f"FeatureTransformer(featureSet={d.get('featureSet')!r}, version={d.get('version')!r}, "
                f"inputs={len(d.get('inputColumns', []))}, outputs={len(d.get('outputColumns', []))})")

    def fit(self, X: Any = None, y: Any = None) -> "FeatureTransformer":
        return self

    @property
    def input_columns(self) -> list[str]:
        return list(self.doc["inputColumns"])

    @property
    def target(self) -> str | None:
        return self.doc.get("target")

    @property
    def n_features_in_(self) -> int:
        return len(self.doc["inputColumns"])

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.asarray(self.doc["inputColumns"], dtype=object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.doc["outputColumns"], dtype=object)

    def _columns(self, X: Any) -> dict[str, Any]:
        names = self.input_columns
        if isinstance(X, pd.DataFrame):
            absent = [n for n in names if n not in X.columns]
            if absent:
                raise FeatureValueError(f"missing feature column(s) {_listing(absent)}; "
                                        f"expected {_listing(names)}")
            return {n: X[n] for n in names}
        arr = np.asarray(X, dtype=object)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise FeatureValueError(f"expected a 2-D input with {len(names)} columns ({_listing(names)}), "
                                    f"got shape {arr.shape}")
        return {n: arr[:, i] for i, n in enumerate(names)}

    def transform(self, X: Any) -> np.ndarray:
        if self.doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format {self.doc.get('format')!r})")
        columns = self._columns(X)
        features = self.doc["features"]
        raw = {f["name"]: convert(columns[f["name"]], f["name"], f["dtype"]) for f in features}
        knn = self.doc.get("knn")
        if knn is not None and getattr(self, "_knn_imputer", None) is None:
            self._knn_imputer = _build_knn(knn)
        filled = _knn_fill(knn, raw, getattr(self, "_knn_imputer", None))
        parts = [_encode(f["transform"], _impute(f["impute"], raw[f["name"]], filled.get(f["name"])), f["dtype"])
                 for f in features]
        n = len(next(iter(raw.values()))) if raw else 0
        return np.hstack(parts) if parts else np.zeros((n, 0))
