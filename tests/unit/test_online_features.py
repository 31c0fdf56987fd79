"""The online store's data model and serving by entity (pure; the store is an in-memory stand-in).

The real Redis is the e2e tier's (tests/e2e/test_online_serving_e2e.py) and the integration tier's
(tests/integration/test_online_store.py)."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mlops_operator.features.online import (
    HIT,
    STALE,
    UNKNOWN,
    Descriptor,
    classify,
    descriptor_key,
    encode_vector,
    entity_token,
    latest_vectors,
    vector_key,
)
from mlops_operator.runtime.online_store import StoreUnavailable
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_entities import EntityFeatures
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = pytest.mark.unit
NOW = 1_800_000_000.0


# ------------------------------------------------------------------------------------------ data model
def test_given_equal_values_of_other_types_when_tokenized_then_one_entity():
    assert entity_token(7) == entity_token(7.0) == entity_token("7") == entity_token(np.int64(7)) == "7"
    assert entity_token(1.5) == "1.5"
    for bad in (float("nan"), None, [1], ""):
        with pytest.raises(ValueError):
            entity_token(bad)


def test_given_two_namespaces_when_keyed_then_equal_featureset_names_never_share_a_key():
    assert vector_key("team-a", "fs", "1") != vector_key("team-b", "fs", "1")
    assert descriptor_key("team-a", "fs") == "team-a/fs" and vector_key("team-a", "fs", "1") == "team-a/fs/1"


def test_given_rows_with_event_times_when_reduced_then_each_entity_keeps_its_newest_row():
    frame = pd.DataFrame({"id": [1, 2, 1, 2, 3], "ts": pd.to_datetime(
        ["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-03", None], utc=True),
        "a": [10.0, 20.0, 11.0, np.nan, 30.0], "b": [1, 2, 3, 4, 5]})
    got = {token: json.loads(raw) for token, raw in latest_vectors(frame, "id", ["a", "b"], "ts", NOW)}
    assert set(got) == {"1", "2"}  # entity 3's only row has no event time
    assert got["1"]["v"] == [10.0, 1] and got["2"]["v"] == [None, 4]
    assert got["2"]["t"] == pd.Timestamp("2026-01-03", tz="UTC").timestamp()


def test_given_no_timestamp_column_when_reduced_then_the_last_row_wins_stamped_now():
    frame = pd.DataFrame({"id": ["x", "x", "y"], "a": [1.0, 2.0, 3.0]})
    got = {token: json.loads(raw) for token, raw in latest_vectors(frame, "id", ["a"], None, NOW)}
    assert got == {"x": {"t": NOW, "v": [2.0]}, "y": {"t": NOW, "v": [3.0]}}


@pytest.mark.parametrize("raw, result", [
    (None, UNKNOWN),
    (encode_vector(NOW - 59, [1.0, 2.0]), HIT),
    (encode_vector(NOW - 61, [1.0, 2.0]), STALE),   # one second past the ttl: never served as fresh
    (encode_vector(NOW - 1, [1.0]), STALE),         # written for another feature list
    (b"not json", STALE),
])
def test_given_a_stored_vector_when_classified_then_the_ttl_is_enforced_on_read(raw, result):
    assert classify(raw, 60.0, NOW, 2).result == result


def test_given_a_descriptor_when_encoded_then_it_decodes_to_itself():
    d = Descriptor("v3", "id", ("a", "b"), 3600.0, "impute", NOW)
    assert Descriptor.decode(d.encode()) == d


# ------------------------------------------------------------------------------------------ serving by entity
class MemoryStore:
    """The `OnlineStore.read` contract over a dict (the real Redis is the e2e tier's)."""

    def __init__(self, data: dict[str, bytes] | None = None, down: bool = False):
        self.data, self.down = dict(data or {}), down

    def read(self, namespace, feature_set, entities):
        if self.down:
            raise StoreUnavailable("online store redis://test unavailable: ConnectionError")
        return (self.data.get(descriptor_key(namespace, feature_set)),
                [self.data.get(vector_key(namespace, feature_set, e)) for e in entities])


FEATURES = ("a", "b")
TRAIN = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]})


@pytest.fixture(scope="module")
def pipeline():
    return make_pipeline(SimpleImputer(strategy="mean"), LogisticRegression()).fit(TRAIN, [0, 0, 0, 1, 1, 1])


def make_app(pipeline, store, on_missing="reject", namespace="team-a"):
    name = f"ent-{uuid.uuid4().hex[:8]}"
    model = SklearnModel(name, "v1", runtime=ModelRuntime(pipeline, feature_names=list(FEATURES)))
    model.feature_set = "fs"
    store.data.setdefault(descriptor_key(namespace, "fs"),
                          Descriptor("v1", "id", ("b", "a"), 60.0, on_missing, NOW).encode())
    labels = (name, "v1", "stable")
    entities = EntityFeatures(store, namespace, lambda: model.feature_set, labels, clock=lambda: NOW)
    return ServeApp(model, ServeMetrics(*labels), entities=entities)


def lookups(app, result):
    name, version, role = app.metrics.labels
    return REGISTRY.get_sample_value("mlops_online_lookups_total",
                                     {"model": name, "version": version, "role": role, "result": result}) or 0.0


def stored(namespace="team-a", **vectors):
    return {vector_key(namespace, "fs", k): encode_vector(t, v) for k, (t, v) in vectors.items()}


async def post(app, path, doc):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as http:
        return await http.post(path.format(m=app.model.name), json=doc)


async def test_given_fresh_vectors_when_entities_are_requested_on_v1_and_v2_then_equal_in_process_predict(pipeline):
    # stored in the descriptor's order (b, a): the server reorders them into the model's (a, b)
    store = MemoryStore(stored(**{"1": (NOW - 5, [4.0, 1.0]), "2": (NOW - 5, [0.0, 5.0])}))
    app = make_app(pipeline, store)
    expected = pipeline.predict(pd.DataFrame({"a": [1.0, 5.0], "b": [4.0, 0.0]})).tolist()
    v1 = await post(app, "/v1/models/{m}:predict", {"entities": [{"id": 1}, {"id": "2"}]})
    v2 = await post(app, "/v2/models/{m}/infer", {"entities": [{"id": 1}, {"id": 2}], "id": "r1"})
    assert v1.status_code == 200 and v1.json()["predictions"] == expected
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == expected and v2.json()["id"] == "r1"
    assert lookups(app, HIT) == 4


async def test_given_an_unknown_and_an_expired_entity_when_policy_reject_then_4xx_naming_them(pipeline):
    store = MemoryStore(stored(**{"1": (NOW - 5, [4.0, 1.0]), "old": (NOW - 3600, [4.0, 1.0])}))
    app = make_app(pipeline, store)
    unknown = await post(app, "/v1/models/{m}:predict", {"entities": [{"id": 1}, {"id": 99}]})
    stale = await post(app, "/v2/models/{m}/infer", {"entities": [{"id": "old"}]})
    assert unknown.status_code == 404 and "99" in unknown.json()["error"]
    assert stale.status_code == 422 and "old" in stale.json()["error"] and "ttl" in stale.json()["error"]
    assert lookups(app, UNKNOWN) == 1 and lookups(app, STALE) == 1


async def test_given_policy_impute_when_an_entity_is_expired_then_the_model_imputes_all_its_features(pipeline):
    store = MemoryStore(stored(**{"old": (NOW - 3600, [4.0, 1.0])}))
    app = make_app(pipeline, store, on_missing="impute")
    response = await post(app, "/v1/models/{m}:predict", {"entities": [{"id": "old"}, {"id": "never"}]})
    expected = pipeline.predict(pd.DataFrame({"a": [np.nan] * 2, "b": [np.nan] * 2})).tolist()
    assert response.status_code == 200 and response.json()["predictions"] == expected
    assert lookups(app, STALE) == 1 and lookups(app, UNKNOWN) == 1


async def test_given_the_store_down_or_another_namespace_when_entities_are_requested_then_503_never_an_answer(pipeline):
    down = make_app(pipeline, MemoryStore(down=True))
    response = await post(down, "/v1/models/{m}:predict", {"entities": [{"id": 1}]})
    assert response.status_code == 503 and "unavailable" in response.json()["error"]
    assert lookups(down, "store_down") == 1
    # equal FeatureSet name, values written under team-a only: team-b's server finds nothing of it
    other = make_app(pipeline, MemoryStore(stored(**{"1": (NOW, [4.0, 1.0])})), namespace="team-b")
    other.entities.store.data = {k: v for k, v in other.entities.store.data.items() if not k.startswith("team-b/fs/")}
    response = await post(other, "/v1/models/{m}:predict", {"entities": [{"id": 1}]})
    assert response.status_code == 404


@pytest.mark.parametrize("doc, fragment", [
    ({"entities": []}, "non-empty"),
    ({"entities": [{"id": 1, "x": 2}]}, "exactly one field"),
    ({"entities": [{"key": 1}]}, "keyed by 'id'"),
    ({"entities": [{"id": [1]}]}, "string or a number"),
])
async def test_given_a_malformed_entity_request_then_400_naming_the_problem(pipeline, doc, fragment):
    app = make_app(pipeline, MemoryStore())
    response = await post(app, "/v1/models/{m}:predict", doc)
    assert response.status_code == 400 and fragment in response.json()["error"]


async def test_given_no_online_store_when_entities_are_requested_then_400_and_raw_rows_still_work(pipeline):
    name = f"ent-{uuid.uuid4().hex[:8]}"
    app = ServeApp(SklearnModel(name, "v1", runtime=ModelRuntime(pipeline, feature_names=list(FEATURES))),
                   ServeMetrics(name, "v1", "stable"))
    refused = await post(app, "/v1/models/{m}:predict", {"entities": [{"id": 1}]})
    raw = await post(app, "/v1/models/{m}:predict", {"instances": [[1.0, 4.0]]})
    assert refused.status_code == 400 and "online store" in refused.json()["error"]
    assert raw.status_code == 200
