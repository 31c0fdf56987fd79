"""Data quality checks of a snapshot and the quality policy that decides what a violation does.

Checks run on the raw rows (cast to their dtype, before any imputation), so a report describes the
source data as it arrived. Each failed check becomes one violation whose message carries the counts
and the worst value ("312 of 569 values above max 10.0 (largest 28.1)"), at most ``MAX_VIOLATIONS`` in
the report (the FeatureSet status is bounded too).

The policy (``qualityPolicy.onViolation``):

* ``fail``   -> the snapshot is not published (the materializer exits 2, reason QualityCheckFailed);
* ``warn``   -> published as is, ``quality.passed`` false;
* ``impute`` -> values that broke min/max/allowedValues are set missing in data.parquet and the fitted
  imputation fills them (a checked feature without ``impute`` gets median / most_frequent, see
  ``transform.default_strategy``); ``maxMissingFraction`` cannot be repaired that way: it stays a
  violation only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mlops_operator.api.v1alpha1.featureset import FeatureSpec
from mlops_operator.errors import InvalidInput
from mlops_operator.features.dtypes import as_text, canonical_category, convert, present_mask
from mlops_operator.timeutil import iso_utc

MAX_VIOLATIONS = 100
MAX_EXAMPLES = 3
CHECK_NAMES = ("min", "max", "allowedValues", "maxMissingFraction")


@dataclass
class QualityResult:
    """The report for stats.json / the termination message, and per feature which values broke a check."""

    report: dict[str, Any]
    violating: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> boolean mask over rows

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


def _num(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


def _bound_check(f: FeatureSpec, col: np.ndarray, present: np.ndarray, check: str,
                 bound: float) -> tuple[dict[str, str] | None, np.ndarray]:
    if str(f.dtype) == "category":
        raise InvalidInput(f"feature {f.name!r}: checks.{check} needs dtype float, int or bool, not category")
    with np.errstate(invalid="ignore"):
        bad = present & ((col < bound) if check == "min" else (col > bound))
    n = int(bad.sum())
    if not n:
        return None, bad
    word, extreme = ("below", "smallest") if check == "min" else ("above", "largest")
    worst = float(col[bad].min() if check == "min" else col[bad].max())
    message = f"{n} of {int(present.sum())} values {word} {check} {_num(bound)} ({extreme} {_num(worst)})"
    return {"feature": f.name, "check": check, "message": message}, bad


def _allowed_check(f: FeatureSpec, col: np.ndarray, present: np.ndarray,
                   allowed: Sequence[Any]) -> tuple[dict[str, str] | None, np.ndarray]:
    dtype = str(f.dtype)
    allowed_text = {canonical_category(v) for v in allowed}
    if dtype == "bool":  # "true", True, 1 and "yes" all mean the same boolean
        allowed_text = {canonical_category(bool(v)) for v in convert(list(allowed), f.name, "bool") if not np.isnan(v)}
    text = as_text(col, dtype)
    bad = present & np.array([t not in allowed_text for t in text], dtype=bool)
    n = int(bad.sum())
    if not n:
        return None, bad
    examples = list(dict.fromkeys(text[bad]))
    shown = ", ".join(repr(v) for v in examples[:MAX_EXAMPLES])
    more = f" and {len(examples) - MAX_EXAMPLES} other values" if len(examples) > MAX_EXAMPLES else ""
    message = f"{n} of {int(present.sum())} values not in allowedValues (e.g. {shown}{more})"
    return {"feature": f.name, "check": "allowedValues", "message": message}, bad


def check_quality(features: Sequence[FeatureSpec], frame: pd.DataFrame, checked_at: datetime) -> QualityResult:
    """Evaluate every feature's checks on ``frame`` (cast columns, one per feature)."""
    rows = len(frame)
    violations: list[dict[str, str]] = []
    violating: dict[str, np.ndarray] = {}
    missing_fraction: dict[str, float] = {}
    for f in features:
        col = convert(frame[f.name], f.name, str(f.dtype))
        present = present_mask(col)
        missing = rows - int(present.sum())
        missing_fraction[f.name] = round(missing / rows, 6) if rows else 0.0
        checks = f.checks
        if checks is None:
            continue
        found: list[tuple[dict[str, str] | None, np.ndarray]] = []
        if checks.min is not None:
            found.append(_bound_check(f, col, present, "min", checks.min))
        if checks.max is not None:
            found.append(_bound_check(f, col, present, "max", checks.max))
        if checks.allowed_values is not None:
            found.append(_allowed_check(f, col, present, checks.allowed_values))
        for violation, bad in found:
            if violation is not None:
                violations.append(violation)
                violating[f.name] = violating.get(f.name, np.zeros(rows, dtype=bool)) | bad
        limit = checks.max_missing_fraction
        if limit is not None and rows and missing / rows > limit:
            violations.append({"feature": f.name, "check": "maxMissingFraction",
                               "message": f"missing fraction {missing / rows:.3g} ({missing} of {rows} values) "
                                          f"above maxMissingFraction {_num(limit)}"})
    report = {
        "passed": not violations,
        "checkedAt": iso_utc(checked_at),
        "rows": rows,
        "violations": violations[:MAX_VIOLATIONS],
        "missingFraction": missing_fraction,
    }
    if len(violations) > MAX_VIOLATIONS:
        report["violationsTotal"] = len(violations)
    return QualityResult(report, violating)


def blank_violations(frame: pd.DataFrame, violating: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Policy impute: the values that broke a check become missing (the transform then imputes them)."""
    out = frame.copy()
    for name, bad in violating.items():
        if bad.any():
            out.loc[bad, name] = None
    return out
