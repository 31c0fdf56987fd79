"""Serving by entity: ``{"entities": [{"<entityKey>": <value>}, ...]}`` on V1 and V2, beside raw rows.

The server looks the entities up in the online store (one round trip for the descriptor and every vector,
``runtime.online_store``), enforces the FeatureSet's TTL on read (``features.online.classify``) and turns
the answer into an ordinary V1 or V2 request of raw rows in the model's feature order; the served
pipeline then applies the fitted transform of the snapshot it was trained on, exactly as for raw rows.

Never a wrong answer: an unknown entity (404), an expired value (422) or a store that cannot answer (503)
refuses the whole request naming the entities, unless the FeatureSet's ``online.onMissing`` is
``impute``: then the entity's features are all missing and the model's fitted imputation fills them.
Every outcome is counted (``mlops_online_lookups_total{result}``) and the age of served values observed
(``mlops_online_feature_age_seconds``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from mlops_operator.features.online import HIT, IMPUTE, STALE, UNKNOWN, Descriptor, classify, entity_token
from mlops_operator.runtime.online_store import OnlineStore, StoreUnavailable
from mlops_operator.runtime.serve_errors import InvalidInput
from mlops_operator.runtime.serve_limits import (
    INVALID,
    NOT_PUBLISHED,
    STALE_FEATURES,
    STORE_UNAVAILABLE,
    UNKNOWN_ENTITY,
    Rejected,
)
from mlops_operator.runtime.serve_v2 import Request, Tensor

LABELS = ("model", "version", "role")
STORE_DOWN = "store_down"
RESULTS = (HIT, UNKNOWN, STALE, STORE_DOWN)
LOOKUPS = Counter("mlops_online_lookups_total", "Entities looked up in the online store, by result "
                  "(hit, unknown, stale, store_down).", (*LABELS, "result"))
AGE = Histogram("mlops_online_feature_age_seconds", "Age (now - event time) of the online feature values served.",
                LABELS, buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400, math.inf))
SHOWN = 5  # entities named in a refusal


def is_entity_request(body: bytes) -> bool:
    """Cheap pre-check on the raw bytes, so raw-row requests are never parsed twice."""
    return b'"entities"' in body


class EntityFeatures:
    """Turns an entity request into raw feature rows from the online store of one FeatureSet."""

    def __init__(self, store: OnlineStore, namespace: str, feature_set: Callable[[], str | None],
                 labels: tuple[str, str, str], clock: Callable[[], float] = time.time) -> None:
        self.store, self.namespace, self.feature_set, self.clock = store, namespace, feature_set, clock
        self._lookups = {result: LOOKUPS.labels(*labels, result) for result in RESULTS}  # all from 0
        self._age = AGE.labels(*labels)

    def rows(self, doc: dict[str, Any], names: list[str] | None) -> list[list[float | None]]:
        """Raw rows (``None`` = missing) in the model's feature order, one per entity; raises Rejected or
        InvalidInput naming the problem."""
        feature_set = self.feature_set()
        if not feature_set:
            raise InvalidInput("this model was not trained on a FeatureSet: send instances (V1) or inputs (V2)")
        key, tokens = _entities(doc.get("entities"))
        try:
            raw_descriptor, vectors = self.store.read(self.namespace, feature_set, tokens)
        except StoreUnavailable as exc:
            self._lookups[STORE_DOWN].inc(len(tokens))
            raise Rejected(503, STORE_UNAVAILABLE, str(exc), retry_after=1) from None
        where = f"FeatureSet {self.namespace}/{feature_set}"
        if raw_descriptor is None:
            raise Rejected(503, NOT_PUBLISHED, f"the online store holds no values of {where} yet "
                           "(materialize it with spec.online.enabled)", retry_after=30)
        descriptor = Descriptor.decode(raw_descriptor)
        if key != descriptor.entity_key:
            raise InvalidInput(f"entities are keyed by {descriptor.entity_key!r} in {where}, not {key!r}")
        columns = _columns(descriptor, names, where)
        now = self.clock()
        rows: list[list[float | None]] = []
        refused: dict[str, list[str]] = {UNKNOWN: [], STALE: []}
        for token, raw in zip(tokens, vectors):
            found = classify(raw, descriptor.ttl_seconds, now, len(descriptor.features))
            self._lookups[found.result].inc()
            if found.result == HIT:
                self._age.observe(found.age_seconds or 0.0)
                rows.append([_number(found.values[i], token, descriptor.features[i]) for i in columns])
            elif descriptor.on_missing == IMPUTE:
                rows.append([None] * len(columns))
            else:
                refused[found.result].append(token)
        if refused[UNKNOWN]:
            raise Rejected(404, UNKNOWN_ENTITY, f"unknown {key} {_show(refused[UNKNOWN])} in the online store of {where}")
        if refused[STALE]:
            raise Rejected(422, STALE_FEATURES, f"the online values of {key} {_show(refused[STALE])} in {where} are "
                           f"older than its ttl ({descriptor.ttl_seconds:g}s); materialize it again")
        return rows

    def v1(self, doc: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        """The V1 request the entities stand for (the answer keeps the request's id)."""
        out: dict[str, Any] = {"instances": self.rows(doc, names)}
        if isinstance(doc.get("id"), str) and doc["id"]:
            out["id"] = doc["id"]
        return out

    def v2(self, doc: dict[str, Any], names: list[str] | None, model: str) -> Request:
        """The V2 request the entities stand for: one FP64 [entities, features] tensor."""
        rows = self.rows(doc, names)
        flat = [value for row in rows for value in row]
        tensor = Tensor(name="input-0", shape=[len(rows), len(rows[0])], datatype="FP64", data=flat)
        given = doc.get("id")
        return Request(model_name=model, inputs=[tensor], id=given if isinstance(given, str) else None)


def _entities(entities: Any) -> tuple[str, list[str]]:
    """(the entity key's name, the entity tokens) of ``[{"<key>": value}, ...]``."""
    if not isinstance(entities, list) or not entities:
        raise InvalidInput('"entities" must be a non-empty list of objects like {"<entityKey>": <value>}')
    key: str | None = None
    tokens: list[str] = []
    for i, entity in enumerate(entities):
        if not isinstance(entity, dict) or len(entity) != 1:
            raise InvalidInput(f"entities[{i}] must be an object with exactly one field: the entity key")
        (name, value), = entity.items()
        if key is not None and name != key:
            raise InvalidInput(f"entities[{i}] is keyed by {name!r}, the others by {key!r}")
        key = name
        try:
            tokens.append(entity_token(value))
        except ValueError as exc:
            raise InvalidInput(f"entities[{i}]: {exc}") from None
    assert key is not None
    return key, tokens


def _columns(descriptor: Descriptor, names: list[str] | None, where: str) -> list[int]:
    """Index into the stored vector of each model feature, in the model's order."""
    if names is None:
        return list(range(len(descriptor.features)))
    index = {name: i for i, name in enumerate(descriptor.features)}
    absent = [name for name in names if name not in index]
    if absent:
        raise Rejected(503, NOT_PUBLISHED, f"the online values of {where} (snapshot {descriptor.version}) lack "
                       f"feature(s) {', '.join(absent[:SHOWN])} this model takes")
    return [index[name] for name in names]


def _number(value: Any, token: str, feature: str) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    raise Rejected(422, INVALID, f"feature {feature!r} of entity {token} is {str(value)[:40]!r}, not a number")


def _show(tokens: list[str]) -> str:
    shown = ", ".join(tokens[:SHOWN])
    return shown + (f" and {len(tokens) - SHOWN} more" if len(tokens) > SHOWN else "")
