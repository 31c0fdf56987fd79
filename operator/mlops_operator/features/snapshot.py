"""The rows of a snapshot (``data.parquet``) built from a source frame and the FeatureSet spec.

Columns, in order: the entity key (``spec.entityKey``, or ``__row__`` = the row number), the timestamp
column if set, every feature RAW but cast to its dtype, the target if set. Casting here means that what
the trainer reads back is already typed: float -> float64, int -> nullable Int64, bool -> nullable
boolean, category -> text (canonical, see ``features.dtypes``), missing values as nulls.

Every problem with the columns is an ``InvalidInput`` naming the column: a feature absent from the source
(with the available columns), a missing key/timestamp/target column, a value that is not of the
feature's dtype, missing or duplicated entity keys.

With ``timestampColumn`` the snapshot keeps each entity's history: one row per (entity, event time), all of
them (point-in-time training joins labels against it); only the online store keeps just the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec, FeatureSpec
from mlops_operator.errors import InvalidInput
from mlops_operator.features.dtypes import convert
from mlops_operator.features.transform import ROW_KEY, check_columns, resolve_features

MAX_EXAMPLES = 3
_PANDAS_DTYPES = {"float": "float64", "int": "Int64", "bool": "boolean", "category": "object"}


@dataclass(frozen=True)
class Snapshot:
    frame: pd.DataFrame  # the data.parquet rows
    features: list[FeatureSpec]
    entity_key: str  # spec.entityKey or ROW_KEY


def cast_column(values: pd.Series, f: FeatureSpec) -> pd.Series:
    """One feature column in its stored dtype (raises FeatureValueError naming the feature)."""
    dtype = str(f.dtype)
    converted = convert(values, f.name, dtype)
    if dtype == "category":
        return pd.Series(converted, index=values.index, dtype=object, name=f.name)
    if dtype == "float":
        return pd.Series(converted, index=values.index, dtype="float64", name=f.name)
    nullable = pd.array(np.where(np.isnan(converted), 0, converted), dtype=_PANDAS_DTYPES[dtype])
    nullable[np.isnan(converted)] = pd.NA
    return pd.Series(nullable, index=values.index, name=f.name)


def _require(source: pd.DataFrame, column: str | None, role: str, where: str) -> None:
    if column is not None and column not in source.columns:
        shown = ", ".join(repr(str(c)) for c in list(source.columns)[:10])
        more = f" and {len(source.columns) - 10} more" if len(source.columns) > 10 else ""
        raise InvalidInput(f"{role} column {column!r} not found in {where}; available columns: {shown}{more}")


def _check_entity_key(source: pd.DataFrame, name: str, timestamp_column: str | None) -> None:
    """Missing keys are refused; so are repeated keys, or with ``timestampColumn``, repeated (key, time) pairs:
    an entity's history is one row per event time."""
    keys = source[name]
    if keys.isna().any():
        raise InvalidInput(f"entityKey column {name!r} has {int(keys.isna().sum())} missing value(s)")
    columns = [name] if timestamp_column is None else [name, timestamp_column]
    repeated = source.duplicated(subset=columns, keep=False)
    if repeated.any():
        dup = source.loc[repeated, columns]
        values = list(dict.fromkeys(tuple(r) if len(r) > 1 else r[0] for r in dup.itertuples(index=False)))
        shown = ", ".join(repr(v) for v in values[:MAX_EXAMPLES])
        what = f"entityKey column {name!r} is not unique" if timestamp_column is None else \
            f"(entityKey, timestampColumn) = ({name!r}, {timestamp_column!r}) is not unique"
        raise InvalidInput(f"{what}: {len(values)} value(s) appear more than once ({len(dup)} rows), e.g. {shown}")


def build_snapshot(spec: FeatureSetSpec, source: pd.DataFrame, where: str) -> Snapshot:
    """Select, check and cast the columns of ``source`` into the snapshot frame."""
    if len(source) == 0:
        raise InvalidInput(f"{where} has no rows")
    source = source.reset_index(drop=True)
    source.columns = [str(c) for c in source.columns]
    _require(source, spec.entity_key, "entityKey", where)
    _require(source, spec.timestamp_column, "timestampColumn", where)
    _require(source, spec.target, "target", where)
    roles = [c for c in (spec.entity_key, spec.timestamp_column, spec.target) if c is not None]
    if len(set(roles)) != len(roles):
        raise InvalidInput("entityKey, timestampColumn and target must be different columns")
    features = resolve_features(spec, list(source.columns))
    if not features:
        raise InvalidInput(f"{where} has no feature columns besides entityKey/timestampColumn/target")
    check_columns(features, list(source.columns), where)
    key = spec.entity_key or ROW_KEY
    if spec.entity_key is None and any(f.name == ROW_KEY for f in features):
        raise InvalidInput(f"feature {ROW_KEY!r} clashes with the row number column; set entityKey")
    columns: dict[str, pd.Series] = {}
    if spec.entity_key is not None:
        _check_entity_key(source, key, spec.timestamp_column)
        columns[key] = source[key]
    else:
        columns[key] = pd.Series(np.arange(len(source), dtype="int64"), name=key)
    if spec.timestamp_column is not None:
        columns[spec.timestamp_column] = source[spec.timestamp_column]
    for f in features:
        columns[f.name] = cast_column(source[f.name], f)
    if spec.target is not None:
        columns[spec.target] = source[spec.target]
    return Snapshot(pd.DataFrame(columns), features, key)

