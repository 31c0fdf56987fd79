"""Drift of current data read in chunks, against a stored reference profile, in memory that does not grow with rows.

Every statistic here comes from counts: per reference bin for a numeric feature (the stored edges),
per reference category plus one "unseen" cell for a categorical one, and how many values were missing.
Counts add up, so the current data can come in chunks of any size: `DriftCounts.add` for each chunk,
then `result()`, which equals one computation over all rows. `reference.feature_drift` itself goes
through here in blocks of about `CHUNK_VALUES` values, so its peak memory is a few copies of one block
however many rows it is given.

Only statistics are computed (PSI, binned KS, chi-square): no p-value, so no scipy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_operator.drift.stats import (
    binned,
    categorical_psi_from_counts,
    category_counts,
    chi2_from_counts,
    ks_from_counts,
    psi_from_counts,
)

CHUNK_VALUES = 1 << 20  # values per block (8 MiB of float64): large enough that numpy's per-call cost vanishes


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: PSI always, KS for numeric features, chi-square for categorical ones."""

    psi: float
    ks: float | None = None
    chi2: float | None = None
    missing_ratio: float = 0.0


class FeatureCounts:
    """What the drift of one feature (or of the predictions) needs from the current values seen so far."""

    def __init__(self, profile: Mapping[str, Any]):
        self.profile = profile
        self.numeric = profile["kind"] == "numeric"
        if self.numeric:
            self.edges = np.asarray(profile["edges"], dtype=float)
            self.counts = np.zeros(max(len(self.edges) - 1, 0), dtype=np.int64)
        else:
            self.categories = list(profile["frequencies"])
            self.counts = np.zeros(len(self.categories) + 1, dtype=np.int64)
        self.values = 0
        self.missing = 0

    def add(self, values: Any) -> None:
        """Count one chunk of this feature's values (any length; NaN or None = missing)."""
        if self.numeric:
            as_float = np.asarray(values, dtype=float).ravel()
            self.values += as_float.size
            if len(self.edges) < 2:  # nothing to bin against: only missingness is known
                self.missing += int(np.count_nonzero(np.isnan(as_float)))
                return
            counts, missing = binned(self.edges, as_float)
            self.counts += counts
            self.missing += missing
            return
        obj = np.asarray(values, dtype=object).ravel()
        self.values += obj.size
        counts = category_counts(self.categories, obj)  # missing values are the ones it skips
        self.counts += counts
        self.missing += obj.size - int(counts.sum())

    def result(self) -> FeatureDrift:
        missing = self.missing / self.values if self.values else 0.0
        if self.numeric:
            if len(self.edges) < 2:
                return FeatureDrift(float("nan"), float("nan"), None, missing)
            fracs = self.profile["fractions"]
            return FeatureDrift(psi_from_counts(fracs, self.counts), ks_from_counts(fracs, self.counts), None, missing)
        freqs, other = self.profile["frequencies"], self.profile.get("otherFraction", 0.0)
        chi2, _ = chi2_from_counts(freqs, self.counts, unseen_share=max(0.01, other))
        return FeatureDrift(categorical_psi_from_counts(freqs, self.counts, other), None, chi2, missing)


class DriftCounts:
    """Counts for every reference feature, over chunks of rows added one at a time.

    A chunk is a DataFrame (features matched by column name; `columns` names the ones the data has) or a
    2-D array whose columns are the reference features in order.
    """

    def __init__(self, reference: Mapping[str, Any], columns: Iterable[str] | None = None):
        names = list(reference["features"])
        if columns is not None:
            present = set(columns)
            names = [n for n in names if n in present]
        self.features = {name: FeatureCounts(reference["features"][name]) for name in names}

    def add(self, chunk: Any) -> None:
        if hasattr(chunk, "columns"):
            for name, counts in self.features.items():
                counts.add(chunk[name].to_numpy())
            return
        block = np.asarray(chunk)
        if block.ndim != 2 or block.shape[1] < len(self.features):
            raise ValueError(f"expected rows of {len(self.features)} reference features, got shape {block.shape}")
        # One copy of the block with each feature contiguous: binning a strided column is several times slower.
        by_feature = np.ascontiguousarray(block[:, : len(self.features)].T)
        for values, counts in zip(by_feature, self.features.values()):
            counts.add(values)

    def result(self) -> dict[str, FeatureDrift]:
        return {name: counts.result() for name, counts in self.features.items()}


def row_blocks(X: Any, chunk_values: int = CHUNK_VALUES) -> Iterator[Any]:
    """Consecutive blocks of rows of `X` (array or DataFrame, no copy) holding about `chunk_values` values each."""
    n_rows, n_columns = np.shape(X)  # 2-D, as `DriftCounts.add` needs
    step = max(1, chunk_values // max(n_columns, 1))
    rows = X.iloc if hasattr(X, "iloc") else X
    for start in range(0, n_rows, step):
        yield rows[start:start + step]


def feature_drift_chunks(reference: Mapping[str, Any], chunks: Iterable[Any],
                         columns: Sequence[str] | None = None) -> dict[str, FeatureDrift]:
    """Drift of every reference feature over current data given as chunks of rows (see `DriftCounts`)."""
    counts = DriftCounts(reference, columns)
    for chunk in chunks:
        counts.add(chunk)
    return counts.result()
