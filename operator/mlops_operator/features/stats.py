"""Per-feature statistics of a snapshot (``stats.json``): what a person or the drift monitor compares.

Computed on the published rows (data.parquet, i.e. after the quality policy, before imputation), so the
numbers describe exactly the file next to them. Numeric and bool features get count/missing/mean/std/
min/max; categories get count/missing/unique and their most frequent values (bounded).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mlops_operator.api.v1alpha1.featureset import FeatureSpec
from mlops_operator.features.dtypes import convert

TOP_CATEGORIES = 10


def _numeric_stats(col: np.ndarray) -> dict[str, Any]:
    present = col[~np.isnan(col)]
    stats: dict[str, Any] = {"count": int(len(present)), "missing": int(len(col) - len(present))}
    if len(present):
        stats.update(mean=float(np.mean(present)), std=float(np.std(present)),
                     min=float(np.min(present)), max=float(np.max(present)))
    else:
        stats.update(mean=None, std=None, min=None, max=None)
    return stats


def _category_stats(col: np.ndarray) -> dict[str, Any]:
    present = pd.Series([v for v in col if v is not None], dtype=object)
    counts = present.value_counts(sort=False)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))  # ties by name: deterministic
    return {
        "count": int(len(present)),
        "missing": int(len(col) - len(present)),
        "unique": int(len(counts)),
        "top": [{"value": str(v), "count": int(n)} for v, n in ranked[:TOP_CATEGORIES]],
    }


def feature_stats(features: Sequence[FeatureSpec], frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in features:
        dtype = str(f.dtype)
        col = convert(frame[f.name], f.name, dtype)
        out[f.name] = {"dtype": dtype, **(_category_stats(col) if dtype == "category" else _numeric_stats(col))}
    return out


def stats_doc(features: Sequence[FeatureSpec], frame: pd.DataFrame, quality: Mapping[str, Any],
              source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stats.json document: ``{rows, features, quality}`` (+ ``source`` for lineage)."""
    doc: dict[str, Any] = {"rows": int(len(frame)), "features": feature_stats(features, frame),
                           "quality": dict(quality)}
    if source is not None:
        doc["source"] = dict(source)
    return doc
