"""``materialize(...)`` in-process against the real MinIO: commit, idempotent retry, quality policies, errors."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest

from mlops_operator.features.transform import FeatureTransformer
from mlops_operator.providers.storage import ArtifactStore, sha256_hex
from mlops_operator.runtime import materialize as mat
from mlops_operator.runtime.train_config import InvalidInput
from test_storage_minio import _keys

pytestmark = pytest.mark.integration

BC = {"source": {"builtin": "breast_cancer"}, "target": "target"}
RADIUS_MAX = {"name": "mean radius", "transform": "standardize", "checks": {"max": 20.0}}  # 45 of 569 rows above




OWNER = {"namespace": "team-a", "kind": "FeatureSet", "name": "bc"}


def config(root: str, spec: dict, version: str = "v1", uid: str = "uid-1",
           spec_hash: str = "s" * 64) -> mat.MaterializeConfig:
    """The Job's environment as the operator writes it (owner and spec hash go into the manifest)."""
    return mat.load_config({
        "MLOPS_FEATURESET": "bc", "MLOPS_FEATURESET_UID": uid, "MLOPS_FEATURESET_SPEC": json.dumps(spec),
        "MLOPS_SNAPSHOT_VERSION": version, "MLOPS_SNAPSHOT_PREFIX": f"{root}features/team-a/bc/{version}/",
        "MLOPS_OWNER": json.dumps({**OWNER, "uid": uid}), "MLOPS_SPEC_HASH": spec_hash,
    })


def snapshot(store: ArtifactStore, prefix: str) -> tuple[pd.DataFrame, dict, dict]:
    data = pd.read_parquet(io.BytesIO(store.fetch_verified(prefix, mat.DATA_FILE)))
    return (data, json.loads(store.fetch_verified(prefix, mat.TRANSFORM_FILE)),
            json.loads(store.fetch_verified(prefix, mat.STATS_FILE)))


def test_given_a_builtin_source_when_materialized_then_snapshot_committed_and_its_transform_applies(store, root):
    cfg = config(root, BC)
    summary = mat.materialize(cfg, store)
    prefix = str(cfg.prefix)
    attempt = store.read_manifest(prefix)["attempt"]
    assert _keys(store, prefix) == {f"{attempt}/{n}" for n in ("data.parquet", "transform.json", "stats.json")} | {
        "manifest.json"}
    assert store.read_manifest(prefix)["owner"] == {**OWNER, "uid": "uid-1"}
    data, doc, stats = snapshot(store, prefix)
    assert summary["ok"] and summary["rows"] == 569 and summary["uri"] == prefix and not summary["existing"]
    assert summary["sha256"] == sha256_hex(store.fetch_verified(prefix, mat.DATA_FILE))
    assert summary["quality"]["passed"] is True and stats["rows"] == 569 and stats["source"]["builtin"] == "breast_cancer"
    assert list(data.columns)[0] == "__row__" and list(data.columns)[-1] == "target" and data.shape == (569, 32)
    assert doc["featureSetUid"] == "uid-1" and doc["version"] == "v1" and len(doc["inputColumns"]) == 30
    out = FeatureTransformer(doc).transform(data)
    np.testing.assert_array_equal(out, data[doc["inputColumns"]].to_numpy(dtype=float))  # transform none


def test_given_a_committed_snapshot_when_the_job_retries_or_the_featureset_is_reapplied_then_adopted(store, root):
    cfg = config(root, BC)
    first = mat.materialize(cfg, store)
    manifest = store.read_manifest(cfg.prefix)
    again = mat.materialize(cfg, store)
    assert again["existing"] is True and again["sha256"] == first["sha256"] and again["createdAt"] == first["createdAt"]
    # Deleted and re-applied from git: a new uid, the same namespace, name and spec -> the snapshot is its own.
    reapplied = mat.materialize(config(root, BC, uid="uid-2"), store)
    assert reapplied["existing"] is True and reapplied["sha256"] == first["sha256"]
    assert store.read_manifest(cfg.prefix) == manifest


@pytest.mark.parametrize("change, why", [
    ({"spec_hash": "t" * 64}, "another spec"),
    ({"owner": {**OWNER, "namespace": "team-b", "uid": "uid-9"}}, "committed by"),
    ({"owner": {**OWNER, "name": "bc2", "uid": "uid-9"}}, "committed by"),
])
def test_given_a_snapshot_another_spec_or_object_committed_when_materialized_then_version_taken_and_unchanged(
        store, root, change, why):
    cfg = config(root, BC)
    mat.materialize(cfg, store)
    manifest = store.read_manifest(cfg.prefix)
    with pytest.raises(mat.VersionTaken, match=why):
        mat.materialize(dataclasses.replace(cfg, **change), store)
    assert store.read_manifest(cfg.prefix) == manifest and store.verify_prefix(cfg.prefix) == manifest


def test_given_policy_fail_and_a_violation_when_materialized_then_quality_check_failed_and_nothing_written(store, root):
    cfg = config(root, {**BC, "features": [RADIUS_MAX]})
    with pytest.raises(mat.QualityCheckFailed) as failed:
        mat.materialize(cfg, store)
    assert mat.outcome(failed.value) == (2, "QualityCheckFailed")
    assert failed.value.quality["violations"] == [
        {"feature": "mean radius", "check": "max", "message": "45 of 569 values above max 20 (largest 28.11)"}]
    assert _keys(store, str(cfg.prefix)) == set()


def test_given_policy_warn_when_materialized_then_published_as_is_with_quality_not_passed(store, root):
    cfg = config(root, {**BC, "features": [RADIUS_MAX], "qualityPolicy": {"onViolation": "warn"}})
    summary = mat.materialize(cfg, store)
    data, _, stats = snapshot(store, str(cfg.prefix))
    assert summary["quality"]["passed"] is False and len(stats["quality"]["violations"]) == 1
    assert data["mean radius"].max() == 28.11 and not data["mean radius"].isna().any()


def test_given_policy_impute_when_materialized_then_violating_values_are_missing_and_the_transform_fills_them(store, root):
    cfg = config(root, {**BC, "features": [RADIUS_MAX, {"name": "mean texture"}],
                        "qualityPolicy": {"onViolation": "impute"}})
    summary = mat.materialize(cfg, store)
    data, doc, stats = snapshot(store, str(cfg.prefix))
    assert summary["quality"]["passed"] is False and stats["quality"]["violations"][0]["check"] == "max"
    assert int(data["mean radius"].isna().sum()) == 45 and data["mean radius"].max() <= 20.0
    assert doc["features"][0]["impute"]["strategy"] == "median"
    out = FeatureTransformer(doc).transform(data)
    assert np.isfinite(out).all() and stats["features"]["mean radius"]["missing"] == 45


def test_given_a_csv_source_with_categories_when_materialized_then_onehot_and_entity_key_round_trip(store, root):
    source = f"{root}sources/customers.csv"
    store.put_object(source, b"id,city,spend,churned\n1,paris,10.5,0\n2,oslo,,1\n3,,7.0,0\n4,paris,3.5,1\n")
    spec = {"source": {"uri": source}, "entityKey": "id", "target": "churned", "features": [
        {"name": "city", "dtype": "category", "transform": "onehot", "impute": {"strategy": "missing_category"},
         "checks": {"maxMissingFraction": 0.5}},
        {"name": "spend", "transform": "standardize", "impute": {"strategy": "mean"}}]}
    cfg = config(root, spec)
    summary = mat.materialize(cfg, store)
    data, doc, stats = snapshot(store, str(cfg.prefix))
    assert summary["quality"] == {**stats["quality"]} and stats["source"]["uri"] == source
    assert list(data.columns) == ["id", "city", "spend", "churned"] and data["id"].tolist() == [1, 2, 3, 4]
    assert doc["outputColumns"] == ["city=__missing__", "city=oslo", "city=paris", "spend"]
    out = FeatureTransformer(doc).transform(pd.DataFrame({"city": [None, "rome"], "spend": [None, 7.0]}))
    np.testing.assert_allclose(out[:, :3], [[1, 0, 0], [0, 0, 0]])
    assert out[0, 3] == 0.0  # the mean, standardized


def test_given_duplicate_entity_keys_in_the_source_when_materialized_then_invalid_input_and_nothing_written(store, root):
    source = f"{root}sources/dup.csv"
    store.put_object(source, b"id,x\n1,0.5\n1,0.7\n2,0.1\n")
    cfg = config(root, {"source": {"uri": source}, "entityKey": "id"})
    with pytest.raises(InvalidInput, match="'id' is not unique: 1 value"):
        mat.materialize(cfg, store)
    assert _keys(store, str(cfg.prefix)) == set()


def test_given_a_missing_source_object_when_materialized_then_invalid_input_names_the_uri(store, root):
    cfg = config(root, {"source": {"uri": f"{root}sources/absent.parquet"}})
    with pytest.raises(InvalidInput, match="source.uri: .*absent.parquet"):
        mat.materialize(cfg, store)


def test_given_the_job_environment_when_main_runs_then_exit_codes_and_termination_messages_follow_the_contract(
        store, root, s3_env, monkeypatch, tmp_path):
    log = tmp_path / "termination"
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLOPS_TERMINATION_LOG", str(log))
    monkeypatch.setenv("MLOPS_FEATURESET", "bc")
    monkeypatch.setenv("MLOPS_FEATURESET_UID", "uid-1")
    monkeypatch.setenv("MLOPS_SNAPSHOT_VERSION", "v1")
    monkeypatch.setenv("MLOPS_SNAPSHOT_PREFIX", f"{root}features/bc/v1/")
    monkeypatch.setenv("MLOPS_FEATURESET_SPEC", json.dumps({**BC, "features": [RADIUS_MAX]}))
    assert mat.main() == 2
    failed = json.loads(log.read_text())
    assert failed["reason"] == "QualityCheckFailed" and failed["exitCode"] == 2
    assert failed["quality"]["violations"][0]["feature"] == "mean radius"

    monkeypatch.setenv("MLOPS_FEATURESET_SPEC", json.dumps(BC))
    assert mat.main() == 0
    done = json.loads(log.read_text())
    assert done["ok"] is True and done["version"] == "v1" and done["rows"] == 569
    assert done["sha256"] == sha256_hex(store.fetch_verified(f"{root}features/bc/v1/", mat.DATA_FILE))

    monkeypatch.setenv("MLOPS_FEATURESET_UID", "uid-other")
    assert mat.main() == 4
    assert json.loads(log.read_text())["reason"] == "VersionTaken"
