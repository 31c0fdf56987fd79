"""Retention in the passes: RetrainPolicy historyLimit prunes its old versions, HyperparameterSearch retainBest
deletes the trials outside the best N once the search has ended (annotate, finalizer, delete)."""

from __future__ import annotations

import copy

import pytest
from test_logic_hyperparametersearch import body as search_body
from test_logic_hyperparametersearch import decide as search_decide
from test_logic_hyperparametersearch import trial_mv, trials
from test_logic_retrainpolicy import UID, body, decide

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearch
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.builders.retrain import RetrainInput, build_model_version
from mlops_operator.logic import deletion
from mlops_operator.logic import hyperparametersearch as hps_logic
from mlops_operator.logic import retrainpolicy as logic

pytestmark = pytest.mark.unit


def version(n: int, phase: str = "Ready", stage: str = "None", uid: str = UID, annotations: dict | None = None,
            finalizers: list | None = None) -> logic.ObservedVersion:
    meta = {"name": f"bc-retrain-r{n}", "uid": f"mv-{n}", "creationTimestamp": f"2026-03-01T0{n}:00:00Z",
            "annotations": {"mlops.dev/retrainpolicy-uid": uid, **(annotations or {})},
            "finalizers": finalizers or []}
    return logic.observe_version({"metadata": meta, "status": {"phase": phase, "stage": stage}})


def world(*versions: logic.ObservedVersion, routed: frozenset[str] | None = frozenset()) -> logic.World:
    return logic.World(versions={v.name: v for v in versions}, routed=routed)


def idle(**spec) -> dict:
    return body(status={"observedGeneration": 1, "phase": "Idle", "retrains": 4}, **spec)


@pytest.mark.parametrize("retrains, limit, listed", [(None, 10, False), (3, 3, False), (4, 3, True)])
def test_given_retrains_and_history_limit_then_versions_are_listed_only_once_retention_can_act(
        retrains, limit, listed):
    b = body(status={"observedGeneration": 1, "retrains": retrains}, historyLimit=limit)
    assert logic.needs(RetrainPolicy.from_body(b), b["status"], logic.parse_time("2026-03-01T12:00:00Z")).versions \
        is listed


def test_given_more_versions_than_history_limit_then_the_oldest_is_deleted_by_uid_with_an_event():
    d = decide(idle(historyLimit=2), world(version(1), version(2), version(3), version(4)))
    assert d.prune == logic.Prune(deletion.Prune.DELETE, "bc-retrain-r1", "mv-1")
    assert ("Normal", "VersionPruned") in [(e.type, e.reason) for e in d.events]


@pytest.mark.parametrize("versions, routed, pruned", [
    # served by stage, or routed by a ModelDeployment: kept, the next oldest goes
    ([version(1, stage="Production"), version(2), version(3)], frozenset(), "bc-retrain-r2"),
    ([version(1), version(2), version(3)], frozenset({"bc-retrain-r1"}), "bc-retrain-r2"),
    # the newest Ready one is kept even when it is old
    ([version(1), version(2, "Rejected"), version(3, "Failed")], frozenset(), "bc-retrain-r2"),
    # another policy's versions (a predecessor of the same name) are never ours to prune
    ([version(1, uid="other"), version(2)], frozenset(), None),
    # the deployments were not read this pass: nothing is pruned on a guess
    ([version(1), version(2), version(3)], None, None),
])
def test_given_protected_versions_when_retaining_then_they_are_kept(versions, routed, pruned):
    d = decide(idle(historyLimit=1), world(*versions, routed=routed))
    assert (d.prune.name if d.prune else None) == pruned


def test_given_delete_artifacts_when_pruning_then_annotate_first_then_wait_for_the_finalizer_then_delete():
    b = idle(historyLimit=1, deleteArtifacts=True)
    annotated = {deletion.DELETE_ARTIFACTS: "true"}
    assert decide(b, world(version(1), version(2))).prune.action == deletion.Prune.ANNOTATE
    assert decide(b, world(version(1, annotations=annotated), version(2))).prune is None
    ready = version(1, annotations=annotated, finalizers=[deletion.FINALIZER])
    assert decide(b, world(ready, version(2))).prune == logic.Prune(deletion.Prune.DELETE, "bc-retrain-r1", "mv-1")


@pytest.mark.parametrize("flag, annotated", [(True, True), (False, False)])
def test_given_delete_artifacts_then_created_versions_carry_the_annotation(flag, annotated):
    rp = RetrainPolicy.from_body(body(deleteArtifacts=flag))
    mv = build_model_version(RetrainInput(policy="bc-retrain", namespace="team-a", policy_uid=UID, model="bc",
                                          template=rp.spec.template, name="bc-retrain-r1", source="manual", detail="",
                                          delete_artifacts=rp.spec.delete_artifacts))
    assert (mv["metadata"]["annotations"].get(deletion.DELETE_ARTIFACTS) == "true") is annotated


# ------------------------------------------------------------------------------ HyperparameterSearch


def ended(retain: int | None = 1, generation: int = 1, **status) -> dict:
    st = {"phase": "Succeeded", "observedGeneration": generation,
          "trials": trials(("Succeeded", 0.97), ("Succeeded", 0.99), "Failed"),
          "best": {"trial": "bc-search-t2", "value": 0.99}, "registeredVersion": "bc-search-t2", **status}
    spec = {"maxTrials": 3} if retain is None else {"maxTrials": 3, "retainBest": retain}
    return search_body(st, generation, **spec)


def observed(b: dict, **meta: dict) -> hps_logic.World:
    """Every trial ModelVersion, Ready/Failed, with extra metadata per trial (``t1={...}``)."""
    seen = {}
    for number, name in enumerate(("bc-search-t1", "bc-search-t2", "bc-search-t3"), start=1):
        phase = "Failed" if number == 3 else "Ready"
        mv = trial_mv(b, number, phase, {"roc_auc": 0.9}, uid=f"u{number}")
        extra = copy.deepcopy(meta.get(f"t{number}", {}))
        mv["metadata"]["annotations"].update(extra.pop("annotations", {}))
        mv["metadata"].update(extra)
        seen[name] = mv
    return hps_logic.World(trials=seen)


def test_given_no_retain_best_then_an_ended_search_reads_and_deletes_no_trial():
    b = ended(retain=None)
    assert hps_logic.needs(HyperparameterSearch.from_body(b), b["status"]).trials == ["bc-search-t3"]
    d = search_decide(b, observed(b))
    assert (d.annotate, d.delete) == ([], [])


def test_given_retain_best_when_the_search_ended_then_the_others_are_annotated_then_deleted_then_done():
    b = ended()
    assert set(hps_logic.needs(HyperparameterSearch.from_body(b), b["status"]).trials) >= {"bc-search-t1",
                                                                                           "bc-search-t3"}
    d = search_decide(b, observed(b))
    assert (d.annotate, d.delete) == (["bc-search-t1", "bc-search-t3"], [])

    marked = {"annotations": {deletion.DELETE_ARTIFACTS: "true"}}
    d = search_decide(b, observed(b, t1=marked, t3=marked))
    assert (d.annotate, d.delete) == ([], [])  # Kopf has not added its finalizer yet

    final = {**marked, "finalizers": [deletion.FINALIZER]}
    d = search_decide(b, observed(b, t1=final, t3=marked))
    assert d.delete == [("bc-search-t1", "u1")]
    assert ("Normal", "TrialsDeleted") in [(e.type, e.reason) for e in d.events]

    gone = search_decide(b, hps_logic.World(trials={"bc-search-t1": None, "bc-search-t2": observed(b).trials[
        "bc-search-t2"], "bc-search-t3": None}))
    c = [c for c in gone.status["conditions"] if c["type"] == "Retention"][0]
    assert (c["status"], c["reason"]) == ("True", "Pruned") and "bc-search-t2" in c["message"]
    after = ended(**{"conditions": gone.status["conditions"]})
    assert hps_logic.needs(HyperparameterSearch.from_body(after), after["status"]).trials == ["bc-search-t3"]


def test_given_retain_best_while_running_then_nothing_is_deleted():
    b = ended(phase="Running")
    b["spec"]["maxTrials"] = 5  # budget left: the search goes on
    d = search_decide(b, observed(b))
    assert (d.annotate, d.delete) == ([], [])


def test_given_a_served_trial_outside_the_best_then_it_is_kept():
    b = ended()
    w = observed(b)
    w.trials["bc-search-t1"]["status"]["stage"] = "Production"
    d = search_decide(b, w)
    assert d.annotate == ["bc-search-t3"]
