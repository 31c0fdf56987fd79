"""Two real writers of one version at the same moment, for both stores (model artifacts and FeatureSet
snapshots), against the real MinIO: exactly one commits, the other leaves every committed byte as it was and
fails (or adopts) with a clear reason.

Both writers run the real entry code (``train`` / ``materialize``) in threads; a barrier holds each at the
commit point until the other has uploaded everything, so the race is the one that matters: both passed the
"already committed?" check and both wrote all their files.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

import pytest

from mlops_operator.providers.storage import AlreadyExistsError, ArtifactStore
from mlops_operator.runtime import materialize as mat
from mlops_operator.runtime.train import train
from test_materialize_minio import BC, config as materialize_config
from test_storage_minio import _keys, settings_for
from test_train_featureset_minio import FS, config as train_config, write_snapshot

pytestmark = pytest.mark.integration


class RacingStore(ArtifactStore):
    """The real store whose commit waits until every racer reached it."""

    def __init__(self, s3_env: dict[str, str], barrier: threading.Barrier) -> None:
        base = ArtifactStore.from_settings(settings_for(s3_env))
        super().__init__(base._client, base.default_bucket, base.endpoint)
        self.barrier = barrier

    def commit(self, prefix, manifest):
        self.barrier.wait()
        return super().commit(prefix, manifest)


def race(s3_env: dict[str, str], *writers: Callable[[ArtifactStore], Any]) -> list[Any]:
    """Run each writer on its own racing store at once; each result is its return value or its exception."""
    barrier = threading.Barrier(len(writers), timeout=120)
    results: list[Any] = [None] * len(writers)

    def run(i: int) -> None:
        try:
            results[i] = writers[i](RacingStore(s3_env, barrier))
        except Exception as exc:  # noqa: BLE001  (the outcome under test)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_given_two_trainers_of_one_version_when_they_commit_together_then_one_wins_and_its_bytes_verify(
        s3_env, store, root):
    snapshot = f"{root}features/{FS}/v1/"
    write_snapshot(store, snapshot)
    cfg = train_config(root)
    results = race(s3_env, lambda s: train(cfg, s), lambda s: train(cfg, s))
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, AlreadyExistsError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "another writer" in str(lost[0])  # exit 4 in the Job: the operator then verifies the winner
    manifest = store.verify_prefix(cfg.artifact_prefix)
    assert won[0]["artifact"]["modelSha256"] == manifest["files"]["model.joblib"]["sha256"]
    # Only the winner's attempt directory remains: the loser removed its own files.
    assert _keys(store, str(cfg.artifact_prefix)) == {f"{manifest['attempt']}/{n}" for n in manifest["files"]} | {
        "manifest.json"}


def test_given_two_materializers_of_one_snapshot_when_they_commit_together_then_one_commits_and_the_other_adopts(
        s3_env, store, root):
    cfg = materialize_config(root, BC)
    results = race(s3_env, lambda s: mat.materialize(cfg, s), lambda s: mat.materialize(cfg, s))
    assert all(isinstance(r, dict) and r["ok"] for r in results), results
    assert sorted(r["existing"] for r in results) == [False, True]  # the loser reports the winner's snapshot
    assert results[0]["sha256"] == results[1]["sha256"]
    manifest = store.verify_prefix(cfg.prefix)
    assert manifest["files"][mat.DATA_FILE]["sha256"] == results[0]["sha256"]
    assert _keys(store, str(cfg.prefix)) == {f"{manifest['attempt']}/{n}" for n in manifest["files"]} | {
        "manifest.json"}


def test_given_two_materializers_with_different_specs_when_they_race_then_the_loser_is_refused_and_nothing_changes(
        s3_env, store, root):
    first = materialize_config(root, BC)
    other = dataclasses.replace(first, spec_hash="t" * 64)  # the same FeatureSet re-created with another spec
    results = race(s3_env, lambda s: mat.materialize(first, s), lambda s: mat.materialize(other, s))
    committed = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, mat.VersionTaken)]
    assert len(committed) == 1 and len(refused) == 1, results
    manifest = store.verify_prefix(first.prefix)
    assert manifest["files"][mat.DATA_FILE]["sha256"] == committed[0]["sha256"]
