"""The online store on the local cluster's real Redis (and MinIO): materialization writes each entity's newest
values under ``<namespace>/<featureset>/<entity>``, equal names in two namespaces never meet, a retried Job
publishes again, and a store that is down or refuses the password is a clear error, never a silent skip."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from mlops_operator.features.online import Descriptor, classify, vector_key
from mlops_operator.providers.storage import ArtifactStore
from mlops_operator.runtime import materialize as mat
from mlops_operator.runtime.online_store import OnlineStore, StoreUnavailable
from mlops_operator.runtime.serve_entities import EntityFeatures

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SPEC = {"entityKey": "id", "timestampColumn": "ts", "target": "label",
        "features": [{"name": "a"}, {"name": "b", "impute": {"strategy": "mean"}}],
        "online": {"enabled": True, "ttl": "1h"}}


@pytest.fixture()
def redis_env(cluster_env) -> dict[str, str]:
    if not cluster_env.get("REDIS_URL"):
        pytest.fail("the local cluster has no Redis: run `make cluster-up` (it starts the missing piece)")
    return {"MLOPS_ONLINE_STORE_URL": cluster_env["REDIS_URL"], "REDIS_PASSWORD": cluster_env["REDIS_PASSWORD"]}




def materialize(store: ArtifactStore, root: str, redis_env: dict, namespace: str, name: str, csv: bytes,
                version: str = "v1") -> dict:
    source = f"{root}sources/{namespace}.csv"
    store.put_object(source, csv)
    spec = {**SPEC, "source": {"uri": source, "format": "csv"}}
    cfg = mat.load_config({
        "MLOPS_FEATURESET": name, "MLOPS_FEATURESET_UID": f"uid-{namespace}", "MLOPS_FEATURESET_SPEC": json.dumps(spec),
        "MLOPS_SNAPSHOT_VERSION": version, "MLOPS_SNAPSHOT_PREFIX": f"{root}features/{namespace}/{name}/{version}/",
        "MLOPS_OWNER": json.dumps({"namespace": namespace, "kind": "FeatureSet", "name": name, "uid": f"uid-{namespace}"}),
        "MLOPS_SPEC_HASH": "s" * 64, **redis_env})
    return mat.materialize(cfg, store, now=lambda: NOW)


def test_given_equal_featureset_names_in_two_namespaces_when_materialized_then_each_reads_only_its_own(
        store, root, redis_env):
    name = f"fs-{uuid.uuid4().hex[:6]}"
    ns_a, ns_b = f"team-a-{uuid.uuid4().hex[:4]}", f"team-b-{uuid.uuid4().hex[:4]}"
    a = materialize(store, root, redis_env, ns_a, name, b"id,ts,a,b,label\n"
                    b"1,2026-12-07T11:50:00Z,5.0,6.0,1\n2,2026-12-07T11:55:00Z,3.0,,1\n")
    b = materialize(store, root, redis_env, ns_b, name, b"id,ts,a,b,label\n1,2026-12-07T11:58:00Z,-7.0,-8.0,0\n")
    assert a["online"] == {"entities": 2, "key": f"{ns_a}/{name}"} and b["online"]["entities"] == 1
    online = OnlineStore.from_env(redis_env)
    desc_a, vectors_a = online.read(ns_a, name, ["1", "2", "3"])
    desc_b, vectors_b = online.read(ns_b, name, ["1", "2"])
    now = NOW.timestamp()
    assert Descriptor.decode(desc_a).features == ("a", "b") and Descriptor.decode(desc_a).ttl_seconds == 3600
    assert [classify(v, 3600, now, 2).values for v in vectors_a] == [(5.0, 6.0), (3.0, None), None]
    assert [classify(v, 3600, now, 2).values for v in vectors_b] == [(-7.0, -8.0), None]
    # serving reads through the same keys: team-b's server never sees team-a's entity 2
    entities_b = EntityFeatures(online, ns_b, lambda: name, ("m", "v1", "stable"), clock=lambda: now)
    assert entities_b.rows({"entities": [{"id": 1}]}, ["a", "b"]) == [[-7.0, -8.0]]
    with pytest.raises(Exception, match="unknown id 2"):
        entities_b.rows({"entities": [{"id": 2}]}, ["a", "b"])


def test_given_a_committed_snapshot_when_the_job_runs_again_then_it_publishes_again(store, root, redis_env):
    name, ns = f"fs-{uuid.uuid4().hex[:6]}", f"team-{uuid.uuid4().hex[:4]}"
    csv = b"id,ts,a,b,label\n7,2026-12-07T11:59:00Z,1.5,2.5,1\n8,2026-12-07T11:59:00Z,0.5,0.5,0\n"
    materialize(store, root, redis_env, ns, name, csv)
    online = OnlineStore.from_env(redis_env)
    online._client.delete(vector_key(ns, name, "7"))  # as if the first Job died before its online writes
    again = materialize(store, root, redis_env, ns, name, csv)
    assert again["existing"] is True and again["online"]["entities"] == 2
    assert classify(online.read(ns, name, ["7"])[1][0], 3600, NOW.timestamp(), 2).values == (1.5, 2.5)


def test_given_many_entities_when_published_then_every_batch_lands(redis_env):
    online, ns, name = OnlineStore.from_env(redis_env), f"team-{uuid.uuid4().hex[:4]}", "wide"
    vectors = ((str(i), json.dumps({"t": 1.0, "v": [i]}).encode()) for i in range(2500))
    assert online.publish(ns, name, Descriptor("v1", "id", ("x",), 60.0), vectors, 120, batch=1000) == 2500
    _, got = online.read(ns, name, ["0", "999", "1000", "2499", "2500"])
    assert [g is not None for g in got] == [True, True, True, True, False]


def test_given_a_store_that_is_down_or_refuses_the_password_then_store_unavailable_quickly(store, root, redis_env):
    wrong = OnlineStore.from_env({**redis_env, "REDIS_PASSWORD": "not-the-password"})
    with pytest.raises(StoreUnavailable, match="unavailable"):
        wrong.read("ns", "fs", ["1"])
    host = redis_env["MLOPS_ONLINE_STORE_URL"].split("//")[1].split(":")[0]
    down = OnlineStore(f"redis://{host}:1/0", "x", timeout=0.5)
    with pytest.raises(StoreUnavailable):
        down.read("ns", "fs", ["1"])
    # the materializer commits the snapshot and then reports the online store's failure by its reason
    env = {**redis_env, "MLOPS_ONLINE_STORE_URL": f"redis://{host}:1/0"}
    with pytest.raises(mat.OnlineStoreFailed, match="committed"):
        materialize(store, root, env, "team-x", "fs-down", b"id,ts,a,b,label\n1,2026-12-07T11:59:00Z,1,2,0\n")
    assert mat.outcome(mat.OnlineStoreFailed("x")) == (3, "OnlineStoreUnavailable")
