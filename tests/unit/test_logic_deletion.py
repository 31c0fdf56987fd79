"""Deletion and retention decisions: who carries the finalizer, whether a deletion waits, what is pruned."""

from __future__ import annotations

import kopf
import pytest

from mlops_operator.builders.retrain import ANNOTATION_DELETE_ARTIFACTS
from mlops_operator.handlers import finalizers
from mlops_operator.handlers.deletion import snapshot_versions
from mlops_operator.logic import deletion
from mlops_operator.logic import modelversion as mv_logic
from mlops_operator.logic.deletion import Action, Prune, Version

pytestmark = pytest.mark.unit

ANNOTATED = {"annotations": {deletion.DELETE_ARTIFACTS: "true"}}


def test_given_the_annotation_name_then_builders_and_logic_agree():
    assert ANNOTATION_DELETE_ARTIFACTS == deletion.DELETE_ARTIFACTS == mv_logic.DELETE_ARTIFACTS


@pytest.mark.parametrize("meta, status, needed", [
    ({}, {}, False),
    ({}, {"stage": "None"}, False),
    ({}, {"stage": "Archived"}, False),
    ({}, {"stage": "Production"}, True),
    ({}, {"stage": "Staging"}, True),
    (ANNOTATED, {}, True),
    ({"annotations": {deletion.DELETE_ARTIFACTS: "false"}}, {"stage": "None"}, False),
    ({"annotations": {deletion.DELETE_ARTIFACTS: "yes"}}, None, False),
])
def test_given_a_model_version_when_asked_then_finalizer_only_for_artifacts_or_maybe_served(meta, status, needed):
    assert deletion.model_version_needs_finalizer(meta, status) is needed


@pytest.mark.parametrize("meta, needed", [({}, False), (ANNOTATED, True),
                                          ({"annotations": {"other": "true"}}, False)])
def test_given_a_feature_set_when_asked_then_finalizer_only_with_the_annotation(meta, needed):
    assert deletion.feature_set_needs_finalizer(meta) is needed


def md(name: str, stable: str | None = None, candidate: str | None = None) -> dict:
    status = {k: v for k, v in (("stableVersion", stable), ("candidateVersion", candidate)) if v}
    return {"metadata": {"name": name}, "status": status}


@pytest.mark.parametrize("deployments, users", [
    ([], []),
    ([md("bc")], []),
    ([md("bc", stable="v2")], []),
    ([md("bc", stable="v1")], ["bc (stable)"]),
    ([md("bc", stable="v2", candidate="v1")], ["bc (candidate)"]),
    ([md("z", stable="v1"), md("a", candidate="v1")], ["a (candidate)", "z (stable)"]),
    ([{"metadata": {"name": "bc"}, "status": {"stableVersion": "v2",  # kept warm to roll back to
                                              "postPromotion": {"version": "v2", "previous": "v1"}}}],
     ["bc (rollback target)"]),
])
def test_given_deployments_when_asked_who_routes_to_v1_then_stable_and_candidate_count(deployments, users):
    assert deletion.routed_by("v1", deployments) == users


@pytest.mark.parametrize("users, artifacts, action, reason", [
    (["bc (stable)"], (True, "deleting"), Action.WAIT, "InUse"),
    (["bc (stable)"], (False, "retained"), Action.WAIT, "InUse"),
    ([], (True, "deleting"), Action.DELETE_ARTIFACTS, "DeletingArtifacts"),
    ([], (False, "retained"), Action.RELEASE, "ArtifactsRetained"),
])
def test_given_users_and_artifact_wish_when_deleting_then_in_use_waits_first(users, artifacts, action, reason):
    step = deletion.decide_model_version_deletion("v1", users, artifacts)
    assert (step.action, step.reason) == (action, reason)
    if action == Action.WAIT:
        assert "bc (stable)" in step.message and "spec.version" in step.message


def v(name: str, created: str, phase: str | None = "Ready", served: bool = False, deleting: bool = False) -> Version:
    return Version(name, created, phase, served, deleting)


@pytest.mark.parametrize("versions, limit, pruned", [
    ([v("r1", "1"), v("r2", "2")], 2, []),
    ([v("r1", "1"), v("r2", "2"), v("r3", "3")], 2, ["r1"]),
    ([v("r1", "1"), v("r2", "2"), v("r3", "3"), v("r4", "4")], 1, ["r1", "r2", "r3"]),
    # the newest Ready one survives even beyond the limit
    ([v("r1", "1"), v("r2", "2", "Rejected"), v("r3", "3", "Failed")], 1, ["r2"]),
    # served (stage or routed) ones are never pruned
    ([v("r1", "1", served=True), v("r2", "2"), v("r3", "3")], 1, ["r2"]),
    # still training, or already being deleted: left alone
    ([v("r1", "1", "Training"), v("r2", "2", deleting=True), v("r3", "3")], 1, []),
    # creation time orders, the name breaks ties
    ([v("b", "1"), v("a", "1"), v("c", "2")], 2, ["a"]),
])
def test_given_policy_versions_when_retained_then_oldest_beyond_limit_go(versions, limit, pruned):
    assert deletion.beyond_history_limit(versions, limit) == pruned


def test_given_bodies_when_viewed_for_retention_then_stage_or_route_marks_served():
    body = {"metadata": {"name": "r1", "creationTimestamp": "t"}, "status": {"phase": "Ready", "stage": "Production"}}
    assert deletion.version_of(body).served
    plain = {"metadata": {"name": "r2", "deletionTimestamp": "t"}, "status": {"phase": "Ready"}}
    assert not deletion.version_of(plain).served and deletion.version_of(plain, frozenset({"r2"})).served
    assert deletion.version_of(plain).deleting


def trial(name: str, state: str, value: float | None = None) -> dict:
    return {"name": name, "state": state, **({"value": value} if value is not None else {})}


TRIALS = [trial("t1", "Succeeded", 0.90), trial("t2", "Failed"), trial("t3", "Succeeded", 0.95),
          trial("t4", "Succeeded", 0.90), trial("t5", "Failed", 0.99)]


@pytest.mark.parametrize("keep, minimize, protected, deleted", [
    (1, False, [], ["t1", "t2", "t4", "t5"]),           # a rejected trial's value never makes it best
    (2, False, [], ["t2", "t4", "t5"]),                 # a tie keeps the earlier trial
    (1, True, [], ["t2", "t3", "t4", "t5"]),
    (1, False, ["t4"], ["t1", "t2", "t5"]),             # the registered version is kept
    (10, False, [], ["t2", "t5"]),
])
def test_given_finished_trials_when_keeping_the_best_then_the_rest_is_deleted(keep, minimize, protected, deleted):
    assert deletion.trials_beyond_best(TRIALS, keep, minimize, protected) == deleted


def test_given_an_active_trial_when_keeping_the_best_then_it_is_never_deleted():
    assert deletion.trials_beyond_best([trial("t1", "Running"), trial("t2", "Pending")], 1, False) == []


def body(annotations: dict | None = None, finalizers: list | None = None, stage: str = "None",
         deleting: bool = False) -> dict:
    meta = {"name": "t1", "uid": "u", "annotations": annotations or {}, "finalizers": finalizers or []}
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    return {"metadata": meta, "status": {"stage": stage}}


@pytest.mark.parametrize("obj, artifacts, served, step", [
    (None, True, False, Prune.GONE),
    (body(deleting=True), True, False, Prune.GONE),
    (body(stage="Production"), True, False, Prune.SKIP),
    (body(), True, True, Prune.SKIP),
    (body(), True, False, Prune.ANNOTATE),
    (body(ANNOTATED["annotations"]), True, False, Prune.WAIT),       # Kopf has not added its finalizer yet
    (body(ANNOTATED["annotations"], [deletion.FINALIZER]), True, False, Prune.DELETE),
    (body(), False, False, Prune.DELETE),                           # artifacts kept: no annotation needed
    (body(ANNOTATED["annotations"]), False, False, Prune.WAIT),     # the user's annotation is honoured too
])
def test_given_a_version_to_prune_when_stepping_then_annotate_then_finalizer_then_delete(obj, artifacts, served, step):
    assert deletion.prune_step(obj, delete_artifacts=artifacts, served=served) == step


@pytest.mark.parametrize("keys, versions", [
    ([], []),
    (["features/ns/fs/v1/manifest.json", "features/ns/fs/v1/a1/data.parquet", "features/ns/fs/v2/a9/x"],
     ["v1", "v2"]),
    (["features/ns/fs/stray"], []),  # an object directly under the root is no version directory
])
def test_given_keys_under_a_feature_set_then_its_version_directories(keys, versions):
    assert snapshot_versions(keys, "features/ns/fs/") == versions


def test_given_the_operator_registry_then_no_timer_requires_the_finalizer_and_gone_objects_stop_matching():
    import mlops_operator.main  # noqa: F401  (registers every handler, then detaches the timers)

    registry = kopf.get_default_registry()
    timers = [h for h in registry._spawning._handlers if type(h).__name__ == "TimerHandler"]
    assert len(timers) == len(finalizers.PLURALS)
    assert all(h.requires_finalizer is False for h in timers)
    memo = kopf.Memo()
    assert all(h.when(memo=memo) for h in timers)
    finalizers.mark_gone(type="MODIFIED", memo=memo)
    assert all(h.when(memo=memo) for h in timers)
    finalizers.mark_gone(type="DELETED", memo=memo)
    assert not any(h.when(memo=memo) for h in timers)
    deleting = {h.id: h for h in registry._changing._handlers if h.requires_finalizer}
    assert set(deleting) == {"artifacts", "snapshots"}
    assert deleting["artifacts"].when(meta={}, status={"stage": "Staging"})
    assert not deleting["artifacts"].when(meta={}, status={"stage": "None"})
    assert not deleting["snapshots"].when(meta={}, status={})
