"""Reference statistics: what the training data looked like, stored as ``reference.json`` next to the model.

The trainer computes them once from the training split; the model server loads them and compares live
traffic (``drift.stats``) to publish ``mlops_feature_drift`` / ``mlops_prediction_drift``. Numeric
features keep quantile bin edges and the training fraction per bin (by construction ~1/k each, except
where ties merge quantiles), plus summary moments; categorical ones keep category frequencies (the most
frequent ``max_categories``; the rest is summed in ``otherFraction``).

Shape (JSON, camelCase like the CRDs)::

    {"version": 1, "rows": 455, "bins": 10,
     "features": {"mean radius": {"kind": "numeric", "dtype": "float", "edges": [...11],
                                  "fractions": [...10], "mean": .., "std": .., "min": .., "max": ..,
                                  "missingFraction": 0.0},
                  "colour": {"kind": "categorical", "dtype": "category", "frequencies": {"red": 0.7, ...},
                             "otherFraction": 0.0, "missingFraction": 0.01}},
     "prediction": {<one feature entry as above, for the model's predictions>}}
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mlops_operator.drift.stats import bin_counts, fractions
from mlops_operator.drift.stream import FeatureCounts, FeatureDrift, feature_drift_chunks, row_blocks

__all__ = ["FeatureDrift", "compare_profile", "feature_drift", "reference_stats"]

REFERENCE_VERSION = 1
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 100


def dtype_name(values: np.ndarray) -> str:
    """The FeatureSet/signature vocabulary: float | int | bool | category."""
    kind = np.asarray(values).dtype.kind
    return {"f": "float", "i": "int", "u": "int", "b": "bool"}.get(kind, "category")


def quantile_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins + 1`` quantile edges ``[min, q1, ..., max]`` of the non-NaN values, ties merged.

    A constant column yields ``[v, v]`` (one bin); no values at all yields an empty array.
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return np.empty(0)
    # inverted_cdf: edges are observed values, so discrete columns get no empty in-between bins.
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf"))
    return edges if edges.size >= 2 else np.array([edges[0], edges[0]])


def numeric_profile(values: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    arr = np.asarray(values)
    as_float = arr.astype(float)
    missing = np.isnan(as_float)
    present = as_float[~missing]
    edges = quantile_edges(present, bins)
    profile: dict[str, Any] = {"kind": "numeric", "dtype": dtype_name(arr),
                               "missingFraction": float(missing.mean()) if arr.size else 0.0}
    if present.size == 0:
        return profile | {"edges": [], "fractions": [], "mean": None, "std": None, "min": None, "max": None}
    return profile | {
        "edges": edges.tolist(),
        "fractions": fractions(bin_counts(edges, present)).tolist(),
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
    }


def categorical_profile(values: np.ndarray, max_categories: int = DEFAULT_MAX_CATEGORIES) -> dict[str, Any]:
    arr = np.asarray(values, dtype=object).ravel()
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in arr], dtype=bool)
    uniq, counts = np.unique(np.asarray([str(v) for v in arr[~missing]], dtype=str), return_counts=True)
    total = max(int(counts.sum()), 1)
    order = np.argsort(-counts, kind="stable")[:max_categories]
    freqs = {str(uniq[i]): float(counts[i] / total) for i in order}
    other = float(1.0 - sum(counts[i] for i in order) / total) if counts.size else 0.0
    return {"kind": "categorical", "dtype": dtype_name(np.asarray(values)), "frequencies": freqs,
            "otherFraction": max(other, 0.0), "missingFraction": float(missing.mean()) if arr.size else 0.0}


def _column(X: Any, j: int, name: str) -> np.ndarray:
    """Column ``name`` of a DataFrame (by name) or column ``j`` of a 2-D array."""
    if hasattr(X, "columns"):
        return X[name].to_numpy()
    return np.asarray(X)[:, j]


def profile_values(values: np.ndarray, categorical: bool, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    if categorical or dtype_name(values) in ("category", "bool"):
        return categorical_profile(values)
    return numeric_profile(values, bins)


def reference_stats(X: Any, feature_names: Sequence[str], *, categorical: Iterable[str] = (),
                    predictions: np.ndarray | None = None, predictions_categorical: bool = False,
                    bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Profile every feature of ``X`` (DataFrame or 2-D array) and, if given, the predictions.

    ``categorical`` names features to treat as categories even if numeric (e.g. encoded codes);
    non-numeric and bool columns are categorical anyway. Classifiers pass
    ``predictions_categorical=True`` so predicted labels are profiled as frequencies.
    """
    cats = set(categorical)
    features = {name: profile_values(_column(X, j, name), name in cats, bins) for j, name in enumerate(feature_names)}
    out: dict[str, Any] = {"version": REFERENCE_VERSION, "rows": int(len(X)), "bins": bins, "features": features}
    if predictions is not None:
        out["prediction"] = profile_values(np.asarray(predictions), predictions_categorical, bins)
    return out


# ----------------------------------------------------------------------------- comparing live data


def compare_profile(profile: Mapping[str, Any], values: np.ndarray) -> FeatureDrift:
    """Drift of current ``values`` against one stored feature (or prediction) profile."""
    counts = FeatureCounts(profile)
    counts.add(values)
    return counts.result()


def feature_drift(reference: Mapping[str, Any], X: Any) -> dict[str, FeatureDrift]:
    """Drift of every reference feature present in ``X`` (DataFrame, or 2-D array in reference order).

    ``X`` is read in blocks of rows (``drift.stream``): memory beyond ``X`` itself stays the same for any row count.
    """
    return feature_drift_chunks(reference, row_blocks(X), list(X.columns) if hasattr(X, "columns") else None)
