"""Deletion and retention against the real apiserver and MinIO.

Two ways of running the operator here: the whole operator in-process (``start_operator``: every handler,
timers included), for what the finalizer is on; and only its deletion handlers (``deletion_operator``:
Kopf with the operator's settings and its two ``on.delete`` handlers, no reconcile timers), so a test can
play the other controllers by writing status itself — a ModelVersion's stage, a ModelDeployment's
stable version — without a rollout or a training pod fighting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from test_operator_modelversion import secret  # noqa: F401  (shared fixture)
from test_operator_references import (  # noqa: F401  (shared fixtures)
    OPERATOR_ENV,
    apply,
    condition,
    crds,
    event_reasons,
    feature_set,
    get,
    model_deployment,
    model_version,
    reconciles,
    start_operator,
    wait_condition,
    wait_for,
)
from test_storage_minio import empty_prefix

import mlops_operator.main  # noqa: F401  (every handler registered, timers detached)
from mlops_operator.handlers import reconciler
from mlops_operator.handlers import retrainpolicy as rp_handler
from mlops_operator.logic.deletion import DELETE_ARTIFACTS, FINALIZER
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube
from mlops_operator.providers.storage import ArtifactStore
from tests.conftest import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MISSING_FS = {"training": {"featureSet": {"name": "absent"}, "estimator": "sklearn.linear_model.LogisticRegression"}}


# ------------------------------------------------------------------------------------------ helpers


def finalizers_of(namespace: str, kind: str, name: str) -> list[str]:
    return ((get(namespace, kind, name) or {}).get("metadata") or {}).get("finalizers") or []


def patch(namespace: str, kind: str, name: str, doc: dict[str, Any], status: bool = False) -> None:
    args = ["-n", namespace, "patch", kind, name, "--type=merge", "-p", json.dumps(doc)]
    kubectl(*args, *(["--subresource=status"] if status else []))


def set_stage(namespace: str, name: str, stage: str) -> None:
    patch(namespace, "modelversion", name, {"status": {"stage": stage}}, status=True)


def gone(namespace: str, kind: str, name: str) -> Callable[[], bool]:
    return lambda: get(namespace, kind, name) is None


@pytest.fixture()
def other_namespace(kube_env) -> Iterator[str]:
    name = f"t-other-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def committed(store: ArtifactStore, prefix: str, owner: dict[str, str]) -> str:
    store.write_version(prefix, {"model.joblib": b"model-bytes", "metrics.json": b"{}"}, owner=owner)
    return prefix


def model_prefix(bucket: str, namespace: str, name: str) -> str:
    return f"s3://{bucket}/models/{namespace}/breast-cancer/{name}/"


def deletion_registry() -> kopf.OperatorRegistry:
    """The operator's start-up (its Kopf settings) and its delete handlers, nothing else."""
    default, registry = kopf.get_default_registry(), kopf.OperatorRegistry()
    for handler in default._activities._handlers:
        registry._activities.append(handler)
    for handler in default._changing._handlers:
        if handler.requires_finalizer:
            registry._changing.append(handler)
    return registry


@pytest.fixture()
def deletion_operator(crds, namespace, monkeypatch) -> Iterator[Callable[[], contextlib.AbstractContextManager]]:
    for key, value in OPERATOR_ENV.items():
        monkeypatch.setenv(key, value)
    operator_settings.cache_clear()

    @contextlib.contextmanager
    def run() -> Iterator[KopfRunner]:
        # Kopf's CLI makes a registry passed to it the process-wide default and never puts the old one back:
        # restore the operator's full registry, or every later in-process operator runs without its timers.
        full = kopf.get_default_registry()
        try:
            with KopfRunner(["run", "--namespace", namespace, "--standalone"], registry=deletion_registry(),
                            timeout=60) as runner:
                yield runner
        finally:
            kopf.set_default_registry(full)

    yield run
    with run():  # release what still carries our finalizer so the namespace can go
        for kind in ("modelversions", "featuresets"):
            kubectl("-n", namespace, "annotate", kind, "--all", f"{DELETE_ARTIFACTS}-", check=False)
        kubectl("-n", namespace, "patch", "modeldeployments", "--all", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"stableVersion": None, "candidateVersion": None}}), check=False)
        kubectl("-n", namespace, "delete", "modelversions,featuresets,modeldeployments,hyperparametersearches",
                "--all", "--wait=true", "--timeout=90s", check=False)
    operator_settings.cache_clear()


# ------------------------------------------------------------------------------------ finalizers


def test_given_the_operator_then_only_annotated_or_served_objects_carry_the_finalizer_and_lose_it_after(
        start_operator, namespace):
    plain, annotated, served = model_version("mv-plain", **MISSING_FS), model_version("mv-annotated", **MISSING_FS), \
        model_version("mv-served", **MISSING_FS)
    annotated["metadata"]["annotations"] = {DELETE_ARTIFACTS: "true"}
    policy = {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "rp"},
              "spec": {"model": "breast-cancer", "triggers": {"schedule": "0 3 1 1 *"},
                       "template": {"training": MISSING_FS["training"]}}}
    with start_operator():
        apply(namespace, plain, annotated, served, feature_set("fs"), policy)
        set_stage(namespace, "mv-served", "Production")
        wait_for("the finalizer on the annotated and the served version", lambda: FINALIZER in finalizers_of(
            namespace, "modelversion", "mv-annotated") and FINALIZER in finalizers_of(namespace, "modelversion",
                                                                                     "mv-served"))
        # every object was reconciled (so Kopf has processed it), and only those two carry the finalizer
        for kind, name in (("modelversion", "mv-plain"), ("featureset", "fs"), ("retrainpolicy", "rp")):
            wait_for(f"{kind}/{name} reconciled", lambda: (get(namespace, kind, name) or {}).get("status", {}).get(
                "observedGeneration"))
            assert finalizers_of(namespace, kind, name) == [], kind

        kubectl("-n", namespace, "annotate", "modelversion", "mv-annotated", f"{DELETE_ARTIFACTS}-")
        set_stage(namespace, "mv-served", "Archived")
        wait_for("both finalizers removed once the filters stop matching", lambda: not finalizers_of(
            namespace, "modelversion", "mv-annotated") and not finalizers_of(namespace, "modelversion", "mv-served"))

        # a finalizer left by an earlier release (timers required it on everything) is removed too
        patch(namespace, "modelversion", "mv-plain", {"metadata": {"finalizers": [FINALIZER]}})
        wait_for("the stale finalizer removed", lambda: not finalizers_of(namespace, "modelversion", "mv-plain"))


def test_given_an_object_without_finalizer_when_deleted_then_it_goes_at_once_and_its_timer_stops(
        start_operator, namespace):
    with start_operator():
        apply(namespace, feature_set("fs"))
        wait_for("fs reconciled", lambda: (get(namespace, "featureset", "fs") or {}).get("status", {}).get(
            "observedGeneration"))
        wait_for("ticks", lambda: reconciles("FeatureSet") >= 2)
        kubectl("-n", namespace, "delete", "featureset", "fs", "--wait=true", "--timeout=10s")
        before = reconciles("FeatureSet")
        time.sleep(7)  # 3 reconcile intervals: a leaked timer would have ticked on the stale body meanwhile
        assert reconciles("FeatureSet") - before <= 1  # at most the one pass already under way


# ----------------------------------------------------------------------------------- delete-artifacts


def test_given_delete_annotation_when_a_version_is_deleted_then_exactly_its_own_prefix_goes(
        deletion_operator, namespace, other_namespace, secret, store):
    bucket = secret["S3_BUCKET"]
    mine = committed(store, model_prefix(bucket, namespace, "bc-v1"),
                     {"namespace": namespace, "kind": "ModelVersion", "name": "bc-v1"})
    theirs = committed(store, model_prefix(bucket, other_namespace, "bc-v1"),
                       {"namespace": other_namespace, "kind": "ModelVersion", "name": "bc-v1"})
    neighbour = committed(store, model_prefix(bucket, namespace, "bc-v10"),
                          {"namespace": namespace, "kind": "ModelVersion", "name": "bc-v10"})
    try:
        versions = [model_version("bc-v1", **MISSING_FS), model_version("bc-v10", **MISSING_FS)]
        versions[0]["metadata"]["annotations"] = {DELETE_ARTIFACTS: "true"}
        apply(other_namespace, model_version("bc-v1", **MISSING_FS))
        with deletion_operator():
            apply(namespace, *versions)
            wait_for("the finalizer", lambda: FINALIZER in finalizers_of(namespace, "modelversion", "bc-v1"))
            kubectl("-n", namespace, "delete", "modelversion", "bc-v1", "--wait=false")
            wait_for("bc-v1 gone", gone(namespace, "modelversion", "bc-v1"))
            assert store.list_keys(mine) == []
            assert store.has_manifest(theirs) and store.has_manifest(neighbour)
            assert get(other_namespace, "modelversion", "bc-v1") is not None
            assert ("Normal", "ArtifactsDeleted") in event_reasons(namespace, "bc-v1")
    finally:
        for prefix in (mine, theirs, neighbour):
            empty_prefix(store, prefix)


def test_given_a_prefix_committed_by_another_object_when_deleted_then_retained_with_a_warning_and_released(
        deletion_operator, namespace, secret, store):
    prefix = committed(store, model_prefix(secret["S3_BUCKET"], namespace, "bc-v1"),
                       {"namespace": namespace, "kind": "ModelVersion", "name": "someone-else"})
    try:
        mv = model_version("bc-v1", **MISSING_FS)
        mv["metadata"]["annotations"] = {DELETE_ARTIFACTS: "true"}
        with deletion_operator():
            apply(namespace, mv)
            wait_for("the finalizer", lambda: FINALIZER in finalizers_of(namespace, "modelversion", "bc-v1"))
            kubectl("-n", namespace, "delete", "modelversion", "bc-v1", "--wait=false")
            wait_for("bc-v1 released", gone(namespace, "modelversion", "bc-v1"))
            assert store.has_manifest(prefix)
            assert ("Warning", "ArtifactsRetained") in event_reasons(namespace, "bc-v1")
    finally:
        empty_prefix(store, prefix)


def test_given_delete_annotation_when_a_feature_set_is_deleted_then_each_own_snapshot_goes(
        deletion_operator, namespace, secret, store):
    bucket = secret["S3_BUCKET"]
    root = f"s3://{bucket}/features/{namespace}/fs/"
    owner = {"namespace": namespace, "kind": "FeatureSet", "name": "fs"}
    v1, v2 = committed(store, root + "v1/", owner), committed(store, root + "v2/", owner)
    foreign = committed(store, root + "v3/", {**owner, "name": "other"})
    sibling = committed(store, f"s3://{bucket}/features/{namespace}/fs2/v1/", {**owner, "name": "fs2"})
    try:
        fs = feature_set("fs")
        fs["metadata"]["annotations"] = {DELETE_ARTIFACTS: "true"}
        with deletion_operator():
            apply(namespace, fs, feature_set("fs2"))
            wait_for("the finalizer", lambda: FINALIZER in finalizers_of(namespace, "featureset", "fs"))
            assert finalizers_of(namespace, "featureset", "fs2") == []
            kubectl("-n", namespace, "delete", "featureset", "fs", "--wait=false")
            wait_for("fs gone", gone(namespace, "featureset", "fs"))
        assert store.list_keys(v1) == [] and store.list_keys(v2) == []
        assert store.has_manifest(foreign) and store.has_manifest(sibling)
    finally:
        for prefix in (root, sibling):
            empty_prefix(store, prefix)


# ------------------------------------------------------------------------------------- protection


@pytest.mark.parametrize("move_off", ["repoint", "delete-deployment"])
def test_given_a_served_version_when_deleted_then_it_waits_in_use_until_the_deployment_moves_off(
        deletion_operator, namespace, move_off):
    apply(namespace, model_version("bc-v1", **MISSING_FS), model_version("bc-v2", **MISSING_FS),
          model_deployment("bc", "bc-v1"))
    with deletion_operator():
        set_stage(namespace, "bc-v1", "Production")
        patch(namespace, "modeldeployment", "bc", {"status": {"stableVersion": "bc-v1", "phase": "Succeeded"}},
              status=True)
        wait_for("the finalizer", lambda: FINALIZER in finalizers_of(namespace, "modelversion", "bc-v1"))
        kubectl("-n", namespace, "delete", "modelversion", "bc-v1", "--wait=false")

        mv = wait_condition(namespace, "modelversion", "bc-v1", "Deleting", "True", "InUse")
        message = condition(mv, "Deleting")["message"]
        assert "bc (stable)" in message and "spec.version" in message
        assert mv["metadata"].get("deletionTimestamp")
        wait_for("a DeletionWaits event", lambda: ("Normal", "DeletionWaits") in event_reasons(namespace, "bc-v1"))

        if move_off == "repoint":  # spec.version changed and the rollout done: stable is the new version
            patch(namespace, "modeldeployment", "bc", {"spec": {"version": "bc-v2"}})
            patch(namespace, "modeldeployment", "bc", {"status": {"stableVersion": "bc-v2"}}, status=True)
        else:
            kubectl("-n", namespace, "delete", "modeldeployment", "bc", "--wait=true")
        # the stage is left Production on purpose: the live deployments decide, not the sticky stage
        wait_for("bc-v1 deleted once nothing routes to it", gone(namespace, "modelversion", "bc-v1"), timeout=30)


# -------------------------------------------------------------------------------------- retention


async def rp_tick(namespace: str) -> None:
    body = await kube.get_custom(rp_handler.PLURAL, namespace, "bc-retrain")
    retry = await reconciler.run_passes(rp_handler.KIND, rp_handler.PLURAL, body, {}, logging.getLogger("test"),
                                        rp_handler.step)
    assert retry is None, retry


def policy_version(name: str, uid: str) -> dict[str, Any]:
    mv = model_version(name, **MISSING_FS)
    mv["metadata"].update(labels={"mlops.dev/retrainpolicy": "bc-retrain"},
                          annotations={"mlops.dev/retrainpolicy-uid": uid})
    return mv


async def test_given_history_limit_when_more_versions_exist_then_the_oldest_unserved_is_deleted(
        crds, namespace, monkeypatch):
    monkeypatch.setattr(reconciler, "post_events", lambda obj, evs: None)
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "bc-retrain"},
                      "spec": {"model": "breast-cancer", "triggers": {"schedule": "0 3 1 1 *"}, "historyLimit": 1,
                               "template": {"training": MISSING_FS["training"]}}})
    await rp_tick(namespace)
    uid = get(namespace, "retrainpolicy", "bc-retrain")["metadata"]["uid"]
    patch(namespace, "retrainpolicy", "bc-retrain", {"status": {"retrains": 4}}, status=True)
    for n in (1, 2, 3, 4):
        apply(namespace, policy_version(f"bc-retrain-r{n}", uid))
        await asyncio.sleep(1.1)  # distinct creation timestamps: they order the versions
        patch(namespace, "modelversion", f"bc-retrain-r{n}", {"status": {"phase": "Ready"}}, status=True)
    set_stage(namespace, "bc-retrain-r1", "Production")                 # served by stage
    apply(namespace, model_deployment("bc", "bc-retrain-r2"))
    patch(namespace, "modeldeployment", "bc", {"status": {"stableVersion": "bc-retrain-r2"}}, status=True)

    await rp_tick(namespace)
    names = lambda: sorted(mv["metadata"]["name"] for mv in json.loads(kubectl(  # noqa: E731
        "-n", namespace, "get", "modelversions", "-o", "json").stdout)["items"])
    # r4 is the newest (Ready) and kept by the limit; r1 served by stage, r2 routed: only r3 goes
    assert names() == ["bc-retrain-r1", "bc-retrain-r2", "bc-retrain-r4"]

    patch(namespace, "modeldeployment", "bc", {"status": {"stableVersion": "bc-retrain-r4"}}, status=True)
    await rp_tick(namespace)
    assert names() == ["bc-retrain-r1", "bc-retrain-r4"]
    await rp_tick(namespace)
    assert names() == ["bc-retrain-r1", "bc-retrain-r4"]


async def test_given_retain_best_when_the_search_ends_then_the_other_trials_go_with_their_artifacts(
        deletion_operator, namespace, secret, store):
    from test_hyperparametersearch_handler import SEARCH, drive, finish, search, status_of, trial_versions

    bucket = secret["S3_BUCKET"]
    apply(namespace, search(maxTrials=2, parallelism=2, retainBest=1))
    await drive(namespace)
    prefixes = {n: committed(store, model_prefix(bucket, namespace, n),
                             {"namespace": namespace, "kind": "ModelVersion", "name": n})
                for n in ("bc-search-t1", "bc-search-t2")}
    try:
        with deletion_operator():
            finish(namespace, "bc-search-t1", "Ready", 0.91)
            finish(namespace, "bc-search-t2", "Ready", 0.96)
            await drive(namespace)  # Succeeded; t1 annotated
            assert status_of(namespace)["registeredVersion"] == "bc-search-t2"

            async def pruned() -> bool:
                await drive(namespace)
                return sorted(trial_versions(namespace)) == ["bc-search-t2"]

            for _ in range(60):
                if await pruned():
                    break
                await asyncio.sleep(1)
            assert sorted(trial_versions(namespace)) == ["bc-search-t2"]
            await drive(namespace)
            hps = get(namespace, "hyperparametersearch", SEARCH)
            assert condition(hps, "Retention")["status"] == "True"
            assert store.list_keys(prefixes["bc-search-t1"]) == [] and store.has_manifest(prefixes["bc-search-t2"])
    finally:
        for prefix in prefixes.values():
            empty_prefix(store, prefix)
