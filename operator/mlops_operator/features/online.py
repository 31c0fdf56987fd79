"""The online store's data model, shared by the materializer (writes) and the model server (reads). Pure.

Keys (the namespace first, so equal FeatureSet names in two namespaces never share a key):

* ``<namespace>/<featureset>/<entity>``: one entity's latest feature values, JSON
  ``{"t": <event time, epoch seconds>, "v": [<value per feature, in the descriptor's order>]}``.
* ``<namespace>/<featureset>``: the descriptor of what the vectors hold, written after them:
  ``{"version", "entityKey", "features", "ttlSeconds", "onMissing", "publishedAt"}``.

The values are the snapshot's raw (checked) feature values, not transformed ones: a served model is a
pipeline that starts with the fitted transform of the snapshot it was trained on, so it transforms them
exactly as in training even when a newer snapshot fitted different parameters.

Freshness is judged on read against the event time: a vector older than ``ttlSeconds`` is stale and never
served as fresh (``classify``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from mlops_operator.errors import InvalidInput

if TYPE_CHECKING:  # pandas is the materializer's; the model server imports this module without it
    import pandas as pd

HIT, UNKNOWN, STALE = "hit", "unknown", "stale"
REJECT, IMPUTE = "reject", "impute"
MAX_ENTITY_CHARS = 256


def descriptor_key(namespace: str, feature_set: str) -> str:
    return f"{namespace}/{feature_set}"


def vector_key(namespace: str, feature_set: str, entity: str) -> str:
    return f"{namespace}/{feature_set}/{entity}"


def entity_token(value: Any) -> str:
    """The text an entity key value is stored under: ``42``, ``42.0`` and ``"42"`` are one entity.

    >>> [entity_token(v) for v in (42, 42.0, "42", np.int64(7), "a b")]
    ['42', '42', '42', '7', 'a b']
    """
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"entity key {value!r} is not a finite number")
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, str):
        if not value or len(value) > MAX_ENTITY_CHARS:
            raise ValueError(f"entity key must be 1..{MAX_ENTITY_CHARS} characters")
        return value
    raise ValueError(f"entity key {str(value)[:40]!r} must be a string or a number")


def _plain(value: Any) -> Any:
    """A JSON-able scalar; missing (None, NaN, pandas' NA and NaT) -> None."""
    if value is None:
        return None
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return None if math.isnan(number) else number
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, str):
        return value
    return None if value != value or type(value).__name__ in ("NAType", "NaTType") else value


def utc_times(values: "pd.Series", column: str) -> np.ndarray:
    """Event times as UTC ``datetime64[ns]`` (naive = UTC, numbers = epoch seconds, text parsed per value,
    ISO 8601); missing -> NaT. The one reading of a ``timestampColumn``: training's point-in-time join and
    online materialization both read it here.

    >>> import pandas as pd
    >>> utc_times(pd.Series(["1970-01-01T00:00:01Z", "1970-01-01T01:00:01+01:00"]), "t").view("int64").tolist()
    [1000000000, 1000000000]
    """
    import pandas as pd

    try:
        if pd.api.types.is_bool_dtype(values):
            raise TypeError("boolean values are not times")
        if pd.api.types.is_numeric_dtype(values):
            seconds = values.astype("float64")
            if not np.isfinite(seconds.dropna()).all():
                raise ValueError("infinite values")
            times = pd.to_datetime(seconds, unit="s", utc=True)
        else:
            times = pd.to_datetime(values, utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"column {column!r} does not hold event times (ISO 8601 text, timestamps or epoch "
                           f"seconds): {exc}") from exc
    return times.dt.tz_convert(None).dt.as_unit("ns").to_numpy(dtype="datetime64[ns]")


def event_seconds(values: "pd.Series", column: str) -> np.ndarray:
    """Event times as epoch seconds, read as ``utc_times`` reads them; missing -> NaN."""
    times = utc_times(values, column)
    seconds = times.view("int64") / 1e9
    seconds[np.isnat(times)] = np.nan
    return seconds


def latest_vectors(frame: "pd.DataFrame", entity_key: str, features: Sequence[str], timestamp_column: str | None,
                   now_seconds: float) -> Iterator[tuple[str, bytes]]:
    """``(entity token, encoded vector)`` for each entity's newest row: by ``timestamp_column`` when set
    (ties: the later row), else the last row of the source, stamped ``now_seconds``. Rows whose event
    time is missing are never an entity's latest."""
    import pandas as pd

    if timestamp_column is not None:
        stamps = pd.Series(event_seconds(frame[timestamp_column], timestamp_column), index=frame.index)
    else:
        stamps = pd.Series(now_seconds, index=frame.index, dtype=float)
    keep = stamps.notna() & frame[entity_key].notna()
    order = pd.DataFrame({"t": stamps[keep], "n": np.arange(int(keep.sum()))}, index=frame.index[keep])
    order = order.sort_values(["t", "n"], kind="stable")
    tokens = frame.loc[order.index, entity_key].map(entity_token)
    last = ~tokens.duplicated(keep="last")
    rows = frame.loc[order.index[last.to_numpy()], list(features)]
    for token, stamp, values in zip(tokens[last], order["t"][last.to_numpy()], rows.itertuples(index=False)):
        yield token, encode_vector(float(stamp), values)


def encode_vector(event_time: float, values: Sequence[Any]) -> bytes:
    return json.dumps({"t": event_time, "v": [_plain(v) for v in values]}, separators=(",", ":"),
                      allow_nan=False).encode()


@dataclass(frozen=True)
class Descriptor:
    version: str
    entity_key: str
    features: tuple[str, ...]
    ttl_seconds: float
    on_missing: str = REJECT
    published_at: float = 0.0

    def encode(self) -> bytes:
        return json.dumps({"version": self.version, "entityKey": self.entity_key, "features": list(self.features),
                           "ttlSeconds": self.ttl_seconds, "onMissing": self.on_missing,
                           "publishedAt": self.published_at}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> "Descriptor":
        doc = json.loads(raw)
        if not isinstance(doc, Mapping):
            raise ValueError("the online descriptor is not a JSON object")
        return cls(str(doc["version"]), str(doc["entityKey"]), tuple(str(f) for f in doc["features"]),
                   float(doc["ttlSeconds"]), str(doc.get("onMissing") or REJECT), float(doc.get("publishedAt") or 0))


@dataclass(frozen=True)
class Lookup:
    """One entity's outcome: ``result`` hit | unknown | stale, its values when a hit, and its age."""

    result: str
    values: tuple[Any, ...] | None = None
    age_seconds: float | None = None


def classify(raw: bytes | str | None, ttl_seconds: float, now_seconds: float, width: int) -> Lookup:
    """What a stored vector means now: absent -> unknown; older than the TTL (or unreadable, or of another
    width) -> stale; else a hit with its values. Never serves an expired value as fresh."""
    if raw is None:
        return Lookup(UNKNOWN)
    try:
        doc = json.loads(raw)
        stamp, values = float(doc["t"]), doc["v"]
    except (ValueError, KeyError, TypeError):
        return Lookup(STALE)
    age = now_seconds - stamp
    if not isinstance(values, list) or len(values) != width or not math.isfinite(age) or age > ttl_seconds:
        return Lookup(STALE, age_seconds=age if math.isfinite(age) else None)
    return Lookup(HIT, tuple(values), max(age, 0.0))
