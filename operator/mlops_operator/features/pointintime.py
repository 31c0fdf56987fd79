"""Point-in-time training rows: each label joined with the feature values known at its event time. Pure.

The rule (``AS_OF_RULE``): for a label of entity ``e`` at time ``t``, take ``e``'s feature row with the
greatest event time ``s`` such that ``s <= t``. A value recorded at exactly the label's time counts as known
(the feature event happened no later than the label's). A value recorded after ``t`` is never used, however
close: that is the leakage the join exists to prevent. With ``max_age``, a value older than ``t - max_age``
is too old to count (``t - s <= max_age`` is kept, the bound inclusive).

Times: a timezone-aware timestamp is converted to UTC, a naive one is read as UTC, a number is epoch
seconds, a text column is parsed (ISO 8601). Entity values are matched as text (``features.online``
``entity_token``), so ``42``, ``42.0`` and ``"42"`` are one entity on both sides.

A label row is dropped, and counted by cause, when its entity, time or label is missing
(``invalid``), when the entity has no feature value at or before its time (``noFeatureValue``), or when the
newest such value is older than ``max_age`` (``tooOld``). Feature rows without an event time are never known.

The join is a sort-merge (``pandas.merge_asof``, by entity, backward): O((n + m) log(n + m)) for the sorts
and one linear pass, no cross product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mlops_operator.errors import InvalidInput
from mlops_operator.features.online import entity_token, utc_times

AS_OF_RULE = "feature event time <= label event time (backward as-of join by entity; equal times count as known)"
_T, _E, _ROW, _Y, _KNOWN = "__asof_time__", "__asof_entity__", "__asof_row__", "__asof_label__", "__asof_known__"


@dataclass(frozen=True)
class JoinReport:
    """How many label rows went in, how many were joined, and why the others were dropped."""

    labels: int
    joined: int
    dropped: dict[str, int] = field(default_factory=dict)  # invalid | noFeatureValue | tooOld

    def as_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "joined": self.joined, "dropped": dict(self.dropped)}


class NoLabelsJoined(InvalidInput):
    """Every label row was dropped: there is nothing to train on."""


def _token(value: Any, column: str) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    try:
        return entity_token(value)
    except ValueError as exc:
        raise InvalidInput(f"column {column!r}: {exc}") from exc


def entity_codes(left: pd.Series, left_name: str, right: pd.Series, right_name: str) -> tuple[np.ndarray, np.ndarray]:
    """One int64 code per entity token on both sides (-1 = missing): equal tokens, equal codes. Each distinct
    value is turned into its token once, so the cost follows the number of entities, not of rows."""
    if all(pd.api.types.is_integer_dtype(v) and not isinstance(v.dtype, pd.api.extensions.ExtensionDtype)
           for v in (left, right)):  # plain integers on both sides: their tokens are equal when they are
        joint, _ = pd.factorize(np.concatenate([left.to_numpy("int64"), right.to_numpy("int64")]))
        return joint[:len(left)].astype("int64"), joint[len(left):].astype("int64")
    parts = []
    for values, name in ((left, left_name), (right, right_name)):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        tokens = np.array([_token(u, name) for u in uniques] + [None], dtype=object)
        parts.append(tokens[codes])  # code -1 picks the trailing None
    joint, _ = pd.factorize(np.concatenate(parts), use_na_sentinel=True)
    return joint[:len(left)].astype("int64"), joint[len(left):].astype("int64")


def as_of_join(features: pd.DataFrame, entity_key: str, feature_time: str, columns: Sequence[str],
               labels: pd.DataFrame, entity_column: str, label_time: str, label_column: str,
               max_age: timedelta | None = None) -> tuple[pd.DataFrame, JoinReport]:
    """The training rows (``columns`` known at each label's time, then ``label_column``), in the labels'
    order, and the report of what was dropped. See the module docstring for the rule."""
    for frame, names, where in ((features, [entity_key, feature_time, *columns], "the feature snapshot"),
                                (labels, [entity_column, label_time, label_column], "the labels")):
        absent = [c for c in names if c not in frame.columns]
        if absent:
            raise InvalidInput(f"{where} lack(s) column(s) {', '.join(repr(c) for c in absent)}; columns: "
                               f"{', '.join(repr(str(c)) for c in list(frame.columns)[:10])}")
    if label_column in columns:
        raise InvalidInput(f"the label column {label_column!r} is also a feature of the snapshot: rename one of them")
    left_codes, right_codes = entity_codes(labels[entity_column], entity_column, features[entity_key], entity_key)
    left = pd.DataFrame({_ROW: np.arange(len(labels)), _E: left_codes, _T: utc_times(labels[label_time], label_time)})
    left[_Y] = labels[label_column].reset_index(drop=True)  # a feature may share the label's name
    valid = (left[_E] >= 0) & left[_T].notna() & left[_Y].notna()
    right = features[list(columns)].reset_index(drop=True)  # the snapshot's dtypes, nullable ones included
    right[_E], right[_T] = right_codes, utc_times(features[feature_time], feature_time)
    right = right[(right[_E] >= 0) & right[_T].notna()]
    right = right.assign(**{_KNOWN: right[_T]})
    merged = pd.merge_asof(left[valid].sort_values(_T, kind="stable"), right.sort_values(_T, kind="stable"),
                           on=_T, by=_E, direction="backward", allow_exact_matches=True)
    known = merged[_KNOWN]
    found = known.notna()
    fresh = found.copy()
    if max_age is not None:
        fresh &= (merged[_T] - known) <= pd.Timedelta(max_age)
    rows = merged[fresh].sort_values(_ROW, kind="stable")
    out = rows[[*columns, _Y]].rename(columns={_Y: label_column}).reset_index(drop=True)
    dropped = {"invalid": int((~valid).sum()), "noFeatureValue": int((~found).sum()),
               "tooOld": int((found & ~fresh).sum())}
    return out, JoinReport(len(labels), len(out), dropped)


def require_rows(report: JoinReport, max_age: timedelta | None, where: str) -> None:
    """Refuse a join that left nothing to train on, naming the cause."""
    if report.joined:
        return
    d = report.dropped
    if report.labels == 0:
        raise NoLabelsJoined(f"{where} has no label rows")
    causes = [f"{d['noFeatureValue']} have no feature value at or before their time",
              f"{d['tooOld']} have only values older than maxAge {max_age}" if max_age else "",
              f"{d['invalid']} lack an entity, a time or a label"]
    raise NoLabelsJoined(f"no label row of {where} has a feature value known at its time: of {report.labels} "
                         f"label row(s), " + "; ".join(c for c in causes if c))
