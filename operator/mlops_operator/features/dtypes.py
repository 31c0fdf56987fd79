"""Turning raw column values into a FeatureSet dtype, the same way at materialize, train and serve time.

One set of conversions for all three places is what keeps a value that was ``"3"`` in a csv, ``3`` in a
JSON request and ``3.0`` in a parquet column with missing values the same category. Representations:

* float / int -> float64 array, NaN = missing (int values keep their integer value as a float);
* bool        -> float64 array of 0.0 / 1.0, NaN = missing;
* category    -> object array of canonical strings, None = missing.

A value that cannot be converted raises ``FeatureValueError`` naming the feature: it is an ``InvalidInput``
(exit 2 for the materializer and the trainer) and a ``ValueError`` (a 400 for the model server).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from mlops_operator.errors import InvalidInput

MISSING_CATEGORY = "__missing__"  # the category impute strategy missing_category fills in
_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n"})
MAX_SHOWN = 3  # offending values quoted in an error message


class FeatureValueError(InvalidInput, ValueError):
    """A value cannot be read as its feature's dtype."""


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def canonical_category(value: Any) -> str | None:
    """``3``, ``3.0`` and ``"3"`` are one category; booleans are ``true``/``false``; missing is None."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def _shown(values: Iterable[Any]) -> str:
    return ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in list(values)[:MAX_SHOWN])


def to_float(values: Any, feature: str, dtype: str = "float") -> np.ndarray:
    """Numbers (or numeric text) as float64 with NaN for missing; text that is no number is an error."""
    series = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        out = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        bad = numbers.isna() & ~series.map(is_missing)
        if bad.any():
            raise FeatureValueError(f"feature {feature!r} (dtype {dtype}): {int(bad.sum())} value(s) are not "
                                    f"numbers, e.g. {_shown(series[bad])}")
        out = numbers.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(out).any():
        raise FeatureValueError(f"feature {feature!r}: {int(np.isinf(out).sum())} infinite value(s)")
    return out


def to_int(values: Any, feature: str) -> np.ndarray:
    """Like ``to_float`` but refuses fractions (2.5 is no int)."""
    out = to_float(values, feature, "int")
    frac = ~np.isnan(out) & (out != np.round(out))
    if frac.any():
        raise FeatureValueError(f"feature {feature!r} (dtype int): {int(frac.sum())} value(s) are not whole "
                                f"numbers, e.g. {_shown(out[frac])}")
    return out


def _bool_of(value: Any, feature: str) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
        return float(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise FeatureValueError(f"feature {feature!r} (dtype bool): {value!r} is not a boolean "
                            "(true/false, 1/0, yes/no)")


def to_bool(values: Any, feature: str) -> np.ndarray:
    """0.0/1.0 with NaN for missing; accepts booleans, 0/1 and true/false/yes/no text."""
    series = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(series) and not series.hasnans:
        return series.to_numpy(dtype="float64")
    return np.fromiter((_bool_of(v, feature) for v in series), dtype="float64", count=len(series))


def to_category(values: Any) -> np.ndarray:
    """Canonical strings (object array) with None for missing; every value is a valid category."""
    series = pd.Series(values, copy=False)
    return np.array([canonical_category(v) for v in series], dtype=object)


def convert(values: Any, feature: str, dtype: str) -> np.ndarray:
    """The internal representation of one column (see the module docstring)."""
    if dtype == "category":
        return to_category(values)
    if dtype == "bool":
        return to_bool(values, feature)
    if dtype == "int":
        return to_int(values, feature)
    return to_float(values, feature)


def convert_scalar(text: str, feature: str, dtype: str) -> Any:
    """A spec value given as text (``impute.value``) in the internal representation of ``dtype``."""
    problem = FeatureValueError(f"feature {feature!r}: impute.value {text!r} is not a valid {dtype}")
    try:
        value = convert([text], feature, dtype)[0]
    except FeatureValueError as exc:
        raise problem from exc
    if is_missing(value):
        raise problem
    return value if dtype == "category" else float(value)


def present_mask(col: np.ndarray) -> np.ndarray:
    """Which entries of an internal column (``convert``'s output) are not missing."""
    if col.dtype == object:
        return np.array([v is not None for v in col], dtype=bool)
    return ~np.isnan(col)


def as_text(col: np.ndarray, dtype: str) -> np.ndarray:
    """An internal column as canonical category text (None = missing): what onehot and allowedValues match."""
    if dtype == "category":
        return col
    if dtype == "bool":
        return np.array([None if np.isnan(v) else ("true" if v else "false") for v in col], dtype=object)
    return np.array([canonical_category(v) for v in col], dtype=object)
