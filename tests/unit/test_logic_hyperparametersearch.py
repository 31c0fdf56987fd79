"""HyperparameterSearch steps: record before create, parallelism, trial outcomes, best, early stop, edits."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearch
from mlops_operator.builders import trial as builder
from mlops_operator.logic import hyperparametersearch as logic
from mlops_operator.logic.references import Problem, Reference
from tests.unit.decisions import cond, reasons

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SPEC = {
    "model": "breast-cancer",
    "template": {"labels": {"channel": "candidates", "mlops.dev/trial": "user-value"},
                 "training": {"dataset": {"builtin": "breast_cancer"},
                              "estimator": "sklearn.ensemble.GradientBoostingClassifier",
                              "hyperparameters": {"n_estimators": 10, "subsample": 0.8},
                              "metrics": ["roc_auc", "accuracy"]},
                 "gates": {"minMetrics": {"accuracy": 0.9}}},
    "space": {"n_estimators": {"values": [50, 100, 200]}, "max_depth": {"min": 2, "max": 6, "type": "int"},
              "learning_rate": {"min": 0.01, "max": 0.3, "scale": "log"}},
    "objective": {"metric": "roc_auc", "goal": "maximize"},
    "maxTrials": 4, "parallelism": 2,
}


def body(status: dict | None = None, generation: int = 1, **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "HyperparameterSearch",
            "metadata": {"name": "bc-search", "namespace": "team-a", "uid": "uid-1234567", "generation": generation},
            "spec": {**copy.deepcopy(SPEC), **spec}, "status": status or {}}


def decide(b: dict, world: logic.World | None = None) -> logic.SearchOutcome:
    return logic.decide(HyperparameterSearch.from_body(b), b["status"], world or logic.World(), NOW)


def trial_mv(b: dict, number: int, phase: str | None = None, metrics: dict | None = None,
             message: str = "", **meta) -> dict:
    """The ModelVersion this search would have created for trial ``number``, with a status."""
    hps = HyperparameterSearch.from_body(b)
    t = b["status"]["trials"][number - 1]
    mv = builder.build_trial(builder.TrialInput("bc-search", "uid-1234567", hps.spec, number, t["name"],
                                                t["parameters"]))
    mv["metadata"].update(meta)
    status: dict = {"phase": phase} if phase else {}
    if metrics is not None:
        status["metrics"] = metrics
    if phase in ("Rejected", "Failed"):
        status["conditions"] = [{"type": "Ready", "status": "False", "reason": "GatesFailed" if phase == "Rejected"
                                 else "OutOfMemory", "message": message}]
    mv["status"] = status
    return mv


def trials(*states: tuple[str, float | None] | str) -> list[dict]:
    """Recorded trials t1..tN: a state, or (state, value)."""
    out = []
    for i, s in enumerate(states, start=1):
        state, value = (s, None) if isinstance(s, str) else s
        t = {"name": f"bc-search-t{i}", "parameters": {"n_estimators": 50, "max_depth": i % 5 + 2,
                                                       "learning_rate": 0.1}, "state": state}
        if value is not None:
            t["value"] = value
        out.append(t)
    return out


def world_of(b: dict, **phases) -> logic.World:
    """Observations for every name ``needs`` asks about: ``t3="Ready:0.97"``, ``t2=None`` (absent), ``t1=""``."""
    hps = HyperparameterSearch.from_body(b)
    seen: dict = {}
    for name in logic.needs(hps, b["status"]).trials:
        key = name.rsplit("-", 1)[-1]
        spec = phases.get(key, "")
        if spec is None:
            seen[name] = None
            continue
        number = int(key[1:])
        phase, _, value = spec.partition(":")
        seen[name] = trial_mv(b, number, phase or None, {"roc_auc": float(value)} if value else None)
    return logic.World(trials=seen)


def states(d: logic.SearchOutcome) -> list[str]:
    return [t["state"] for t in d.status.get("trials") or []]


# ------------------------------------------------------------------------------------ record, create


def test_given_a_new_search_then_the_first_trial_is_recorded_before_anything_is_created():
    d = decide(body())
    assert d.create == [] and d.labels == []
    [t] = d.status["trials"]
    assert t["name"] == "bc-search-t1" and t["state"] == "Pending"
    assert t["parameters"]["n_estimators"] in (50, 100, 200) and isinstance(t["parameters"]["max_depth"], int)
    assert 0.01 <= t["parameters"]["learning_rate"] <= 0.3
    assert d.status["phase"] == "Running" and cond(d, "Ready") == ("False", "Running")
    assert cond(d, "InvalidSpec") == ("False", "Valid") and d.status["observedGeneration"] == 1


def test_given_the_same_status_after_a_restart_then_the_same_trial_is_suggested():
    assert decide(body()).status["trials"] == decide(body()).status["trials"]


def test_given_a_recorded_trial_not_created_yet_then_its_model_version_is_built_and_status_is_unchanged():
    b = body({"trials": decide(body()).status["trials"], "phase": "Running"})
    d = decide(b, world_of(b, t1=None))
    [mv] = d.create
    params = b["status"]["trials"][0]["parameters"]
    assert mv["kind"] == "ModelVersion" and mv["metadata"]["name"] == "bc-search-t1"
    assert "ownerReferences" not in mv["metadata"]  # a registered version outlives its search
    assert mv["metadata"]["labels"] == {"channel": "candidates", "mlops.dev/model": "breast-cancer",
                                        "app.kubernetes.io/managed-by": "mlops-operator",
                                        "mlops.dev/hyperparametersearch": "bc-search", "mlops.dev/trial": "1"}
    annotations = mv["metadata"]["annotations"]
    assert annotations[builder.ANNOTATION_SEARCH_UID] == "uid-1234567"
    assert annotations[builder.ANNOTATION_SPEC] == builder.spec_fingerprint(HyperparameterSearch.from_body(b).spec)
    assert mv["spec"]["model"] == "breast-cancer" and mv["spec"]["gates"] == {"minMetrics": {"accuracy": 0.9}}
    assert mv["spec"]["training"]["hyperparameters"] == {"subsample": 0.8, **params}  # trial overrides template
    assert type(mv["spec"]["training"]["hyperparameters"]["max_depth"]) is int
    assert d.status["trials"] == b["status"]["trials"] and d.events == []


def test_given_the_trial_model_version_exists_then_running_and_announced_and_the_next_one_recorded():
    b = body({"trials": trials("Pending"), "phase": "Running"})
    d = decide(b, world_of(b, t1="Training"))
    assert states(d) == ["Running", "Pending"]
    assert reasons(d) == [("Normal", "TrialCreated")] and "bc-search-t1" in d.events[0].message
    assert d.status["trials"][1]["name"] == "bc-search-t2" and d.create == []


def test_given_parallelism_trials_active_then_nothing_new_is_recorded():
    b = body({"trials": trials("Running", "Running"), "phase": "Running"})
    d = decide(b, world_of(b, t1="Training", t2="Validating"))
    assert states(d) == ["Running", "Running"] and d.create == [] and d.events == []


def test_given_parallelism_raised_then_the_edit_applies_on_the_next_pass():
    b = body({"trials": trials("Running", "Running"), "phase": "Running"}, parallelism=3)
    d = decide(b, world_of(b, t1="Training", t2="Training"))
    assert states(d) == ["Running", "Running", "Pending"]


# -------------------------------------------------------------------------------------- outcomes


def test_given_a_ready_trial_then_succeeded_with_its_value_and_it_is_the_best():
    b = body({"trials": trials("Running", "Running"), "phase": "Running"})
    d = decide(b, world_of(b, t1="Ready:0.97", t2="Training"))
    assert d.status["trials"][0] == {**b["status"]["trials"][0], "state": "Succeeded", "value": 0.97}
    assert ("Normal", "TrialFinished") in reasons(d) and "roc_auc=0.97" in d.events[0].message
    assert d.status["best"] == {"trial": "bc-search-t1", "parameters": b["status"]["trials"][0]["parameters"],
                                "value": 0.97}
    assert d.status["completedTrials"] == 1 and states(d)[-1] == "Pending"  # a slot freed: t3 recorded


def test_given_a_trial_rejected_by_its_gates_then_its_value_is_kept_but_it_is_never_best():
    b = body({"trials": trials(("Succeeded", 0.90), "Running"), "phase": "Running"})
    d = decide(b, logic.World(trials={"bc-search-t2": trial_mv(b, 2, "Rejected", {"roc_auc": 0.99},
                                                               "accuracy 0.88 < 0.9")}))
    t2 = d.status["trials"][1]
    assert t2["state"] == "Failed" and t2["value"] == 0.99
    assert t2["message"] == "rejected by its gates: GatesFailed: accuracy 0.88 < 0.9"
    assert d.status["best"]["trial"] == "bc-search-t1"
    assert ("Warning", "TrialFinished") in reasons(d)


def test_given_a_failed_trial_then_failed_without_value_and_the_reason_kept():
    b = body({"trials": trials("Running"), "phase": "Running"})
    world = logic.World(trials={"bc-search-t1": trial_mv(b, 1, "Failed", None, "exit code 137")})
    t1 = decide(b, world).status["trials"][0]
    assert t1["state"] == "Failed" and "value" not in t1
    assert t1["message"] == "training failed: OutOfMemory: exit code 137"


@pytest.mark.parametrize("metrics", [None, {"accuracy": 0.95}, {"roc_auc": float("nan")}, {"roc_auc": True}])
def test_given_a_ready_trial_without_a_finite_objective_metric_then_failed_with_a_reason(metrics):
    b = body({"trials": trials("Running"), "phase": "Running"})
    d = decide(b, logic.World(trials={"bc-search-t1": trial_mv(b, 1, "Ready", metrics)}))
    t1 = d.status["trials"][0]
    assert t1["state"] == "Failed" and "value" not in t1 and "without a finite roc_auc" in t1["message"]
    assert "best" not in d.status


def test_given_a_running_trials_model_version_deleted_then_the_trial_failed():
    b = body({"trials": trials("Running"), "phase": "Running"})
    d = decide(b, world_of(b, t1=None))
    assert d.status["trials"][0]["state"] == "Failed" and "was deleted" in d.status["trials"][0]["message"]
    assert d.create == []


def test_given_a_goal_minimize_then_the_lowest_value_is_best_and_ties_go_to_the_earliest():
    done = trials(("Succeeded", 0.3), ("Succeeded", 0.1), ("Succeeded", 0.1), ("Succeeded", 0.5))
    b = body({"trials": done, "phase": "Running"}, objective={"metric": "roc_auc", "goal": "minimize"},
             registerBest=False)
    d = decide(b, world_of(b))
    assert d.status["best"]["trial"] == "bc-search-t2" and d.status["best"]["value"] == 0.1


# ----------------------------------------------------------------------------------------- the end


def test_given_max_trials_finished_then_succeeded_and_the_best_is_labelled():
    done = trials(("Succeeded", 0.91), ("Succeeded", 0.97), ("Failed", 0.99), "Running")
    b = body({"trials": done, "phase": "Running", "best": {"trial": "bc-search-t2", "value": 0.97}})
    d = decide(b, world_of(b, t4="Ready:0.95"))
    assert d.status["phase"] == "Succeeded" and cond(d, "Ready") == ("True", "SearchSucceeded")
    assert d.status["best"]["trial"] == "bc-search-t2" and d.status["completedTrials"] == 4
    assert d.labels == [logic.LabelPatch("bc-search-t2", {"mlops.dev/best-of": "bc-search"})]
    assert d.status["registeredVersion"] == "bc-search-t2" and cond(d, "Registered") == ("True", "Registered")
    assert [r for _, r in reasons(d)] == ["TrialFinished", "SearchSucceeded", "BestRegistered"]
    again = decide(body(d.status), world_of(body(d.status)))
    assert again.labels == [] and again.events == [] and again.status == d.status


def test_given_register_best_false_then_only_status_names_the_best():
    done = trials(("Succeeded", 0.91), ("Succeeded", 0.97), ("Succeeded", 0.5), ("Succeeded", 0.6))
    b = body({"trials": done, "phase": "Running"}, registerBest=False)
    d = decide(b, world_of(b))
    assert d.status["phase"] == "Succeeded" and d.labels == [] and "registeredVersion" not in d.status


def test_given_register_best_switched_off_after_registration_then_the_label_is_removed():
    done = trials(("Succeeded", 0.91), ("Succeeded", 0.97), ("Succeeded", 0.5), ("Succeeded", 0.6))
    b = body({"trials": done, "phase": "Succeeded", "registeredVersion": "bc-search-t2",
              "best": {"trial": "bc-search-t2", "value": 0.97}}, registerBest=False)
    d = decide(b, world_of(b))
    assert d.labels == [logic.LabelPatch("bc-search-t2", {"mlops.dev/best-of": None})]
    assert "registeredVersion" not in d.status


def test_given_the_best_trials_model_version_was_deleted_then_nothing_is_labelled_and_a_warning():
    done = trials(("Succeeded", 0.91), ("Succeeded", 0.97), ("Succeeded", 0.5), ("Succeeded", 0.6))
    b = body({"trials": done, "phase": "Running", "best": {"trial": "bc-search-t2", "value": 0.97}})
    d = decide(b, world_of(b, t2=None))
    assert d.status["phase"] == "Succeeded" and d.labels == [] and "registeredVersion" not in d.status
    assert cond(d, "Registered") == ("False", "BestTrialMissing")
    assert ("Warning", "BestTrialMissing") in reasons(d)


def test_given_every_trial_failed_then_the_search_failed():
    b = body({"trials": trials("Failed", ("Failed", 0.99), "Failed", "Running"), "phase": "Running"})
    d = decide(b, world_of(b, t4="Failed"))
    assert d.status["phase"] == "Failed" and cond(d, "Ready") == ("False", "NoReadyTrial")
    assert ("Warning", "SearchFailed") in reasons(d) and "best" not in d.status and d.labels == []


def test_given_a_grid_smaller_than_max_trials_then_it_completes_after_the_last_point():
    grid = {"n_estimators": {"values": [50, 100]}, "max_depth": {"values": [2, 3]}}
    b = body(algorithm="grid", space=grid, maxTrials=10, parallelism=10)
    seen = []
    for _ in range(4):
        d = decide(b)
        seen.append(d.status["trials"][-1]["parameters"])
        b = body(d.status, algorithm="grid", space=grid, maxTrials=10, parallelism=10)
    assert len({tuple(sorted(p.items())) for p in seen}) == 4
    assert decide(b).status["trials"] == b["status"]["trials"]  # the grid is exhausted: nothing more
    b["status"]["trials"] = [{**t, "state": "Succeeded", "value": 0.9 + i / 100}
                             for i, t in enumerate(b["status"]["trials"])]
    d = decide(b, world_of(b))
    assert d.status["phase"] == "Succeeded" and d.status["best"]["trial"] == "bc-search-t4"


def test_given_max_trials_raised_after_success_then_the_search_resumes_and_the_label_moves_to_a_better_trial():
    done = trials(("Succeeded", 0.91), ("Succeeded", 0.97), ("Succeeded", 0.5), ("Succeeded", 0.6))
    registered = {"trials": done, "phase": "Succeeded", "registeredVersion": "bc-search-t2",
                  "best": {"trial": "bc-search-t2", "value": 0.97}}
    b = body(registered, generation=2, maxTrials=5)
    d = decide(b, world_of(b))
    assert d.status["phase"] == "Running" and states(d)[-1] == "Pending" and d.labels == []
    assert d.status["registeredVersion"] == "bc-search-t2"  # kept until the search succeeds again
    d.status["trials"][-1].update(state="Running")
    b = body(d.status, generation=2, maxTrials=5)
    d = decide(b, world_of(b, t5="Ready:0.99"))
    assert d.status["phase"] == "Succeeded" and d.status["best"]["trial"] == "bc-search-t5"
    assert d.labels == [logic.LabelPatch("bc-search-t5", {"mlops.dev/best-of": "bc-search"}),
                        logic.LabelPatch("bc-search-t2", {"mlops.dev/best-of": None})]
    assert d.status["registeredVersion"] == "bc-search-t5"


# ---------------------------------------------------------------------------------- early stopping


def early(**kw) -> dict:
    return {"earlyStopping": {"type": "median", "minTrials": 2}, "maxTrials": 10, **kw}


def test_given_min_trials_finished_after_the_best_without_beating_it_then_no_new_trial():
    b = body({"trials": trials(("Succeeded", 0.97), ("Succeeded", 0.9), "Running"), "phase": "Running"}, **early())
    d = decide(b, world_of(b, t3="Ready:0.95"))
    assert cond(d, "EarlyStopped") == ("True", "NoImprovement") and ("Normal", "EarlyStopped") in reasons(d)
    assert len(d.status["trials"]) == 3 and d.status["phase"] == "Succeeded"
    assert "SearchSucceeded" in [r for _, r in reasons(d)]


def test_given_fewer_than_min_trials_after_the_best_then_the_search_goes_on():
    b = body({"trials": trials(("Succeeded", 0.9), ("Succeeded", 0.97), "Running"), "phase": "Running"}, **early())
    d = decide(b, world_of(b, t3="Ready:0.95"))
    assert cond(d, "EarlyStopped") is None and states(d)[-1] == "Pending"


def test_given_an_early_stop_then_running_trials_finish_and_count_before_the_search_ends():
    status = {"trials": trials(("Succeeded", 0.97), ("Succeeded", 0.9), ("Failed", None), "Running"),
              "phase": "Running"}
    b = body(status, **early(parallelism=3))
    d = decide(b, world_of(b, t4="Training"))
    assert cond(d, "EarlyStopped") == ("True", "NoImprovement") and d.status["phase"] == "Running"
    b = body(d.status, **early(parallelism=3))
    d = decide(b, world_of(b, t4="Ready:0.99"))
    assert d.status["phase"] == "Succeeded" and d.status["best"]["trial"] == "bc-search-t4"
    assert len(d.status["trials"]) == 4  # the stop is kept though the newest trial improved


def test_given_early_stopping_switched_off_after_a_stop_then_the_search_resumes():
    b = body({"trials": trials(("Succeeded", 0.97), ("Succeeded", 0.9), ("Succeeded", 0.9)), "phase": "Running"},
             **early())
    stopped = decide(b, world_of(b)).status
    assert stopped["phase"] == "Succeeded"
    b = body(stopped, maxTrials=10)
    d = decide(b, world_of(b))
    assert cond(d, "EarlyStopped") == ("False", "Disabled") and d.status["phase"] == "Running"
    assert states(d)[-1] == "Pending"


# --------------------------------------------------------------------------------- validation, edits


def test_given_a_dangling_reference_then_invalid_spec_and_no_trial():
    problem = Problem("FeatureSetNotFound", "spec.template.training.featureSet.name: FeatureSet 'f' not found")
    d = decide(body(), logic.World(problems=[problem]))
    assert "trials" not in d.status and d.status["phase"] == "Pending"
    assert cond(d, "InvalidSpec") == ("True", "FeatureSetNotFound")
    assert cond(d, "Ready") == ("False", "FeatureSetNotFound")
    assert reasons(d) == [("Warning", "FeatureSetNotFound")]


def test_given_a_template_referencing_a_feature_set_then_needs_resolves_it():
    template = copy.deepcopy(SPEC["template"])
    template["training"] = {**template["training"], "featureSet": {"name": "bc-features"}}
    del template["training"]["dataset"]
    hps = HyperparameterSearch.from_body(body(template=template))
    assert logic.needs(hps, {}).references == [
        Reference("FeatureSet", "bc-features", "spec.template.training.featureSet.name")]


def test_given_trials_then_needs_reads_the_active_the_newest_and_the_best_to_register():
    status = {"trials": trials(("Succeeded", 0.97), "Running", ("Failed", None), "Pending", ("Succeeded", 0.5)),
              "best": {"trial": "bc-search-t1", "value": 0.97}}
    hps = HyperparameterSearch.from_body(body(status))
    assert logic.needs(hps, status).trials == ["bc-search-t2", "bc-search-t4", "bc-search-t5", "bc-search-t1"]
    status["registeredVersion"] = "bc-search-t1"
    assert logic.needs(hps, status).trials == ["bc-search-t2", "bc-search-t4", "bc-search-t5"]


def test_given_a_space_edit_after_the_first_trial_then_refused_until_reverted():
    b = body({"trials": trials("Running"), "phase": "Running"})
    world = world_of(b, t1="Training")  # carries the fingerprint of the original spec
    edited = body(b["status"], generation=2, space={"n_estimators": {"values": [10, 20]}})
    d = decide(edited, world)
    assert cond(d, "InvalidSpec") == ("True", "SpecChangeNotSupported") and len(d.status["trials"]) == 1
    assert ("Warning", "SpecChangeNotSupported") in reasons(d)
    assert cond(d, "Ready") == ("False", "SpecChangeNotSupported")
    reverted = body(d.status, generation=3)
    d = decide(reverted, world)
    assert cond(d, "InvalidSpec") == ("False", "Valid") and states(d) == ["Running", "Pending"]


@pytest.mark.parametrize("edit", [{"maxTrials": 9}, {"parallelism": 1}, {"registerBest": False},
                                  {"earlyStopping": {"type": "median", "minTrials": 5}}])
def test_given_an_edit_of_an_editable_field_then_accepted(edit):
    b = body({"trials": trials("Running"), "phase": "Running"})
    world = world_of(b, t1="Training")
    d = decide(body(b["status"], generation=2, **edit), world)
    assert cond(d, "InvalidSpec") == ("False", "Valid")


def test_given_an_int_range_without_integers_then_invalid_spec_and_no_trial():
    d = decide(body(space={"max_depth": {"min": 2.2, "max": 2.8, "type": "int"}}))
    assert cond(d, "InvalidSpec") == ("True", "InvalidSearchSpace") and "trials" not in d.status


# ----------------------------------------------------------------------------------- name collisions


def test_given_a_trial_name_taken_by_another_object_then_the_fallback_name_then_failed():
    b = body({"trials": trials("Pending"), "phase": "Running"})
    foreign = trial_mv(b, 1, "Ready", {"roc_auc": 0.5})
    foreign["metadata"]["annotations"][builder.ANNOTATION_SEARCH_UID] = "an-older-search"
    d = decide(b, logic.World(trials={"bc-search-t1": foreign}))
    assert d.status["trials"][0]["name"] == "bc-search-uid-1-t1" and d.status["trials"][0]["state"] == "Pending"
    assert reasons(d) == [("Warning", "TrialNameTaken")] and d.create == []
    b = body(d.status)
    d = decide(b, logic.World(trials={"bc-search-uid-1-t1": None}))
    assert [mv["metadata"]["name"] for mv in d.create] == ["bc-search-uid-1-t1"]
    d = decide(b, logic.World(trials={"bc-search-uid-1-t1": foreign}))
    assert d.status["trials"][0]["state"] == "Failed" and "taken" in d.status["trials"][0]["message"]
