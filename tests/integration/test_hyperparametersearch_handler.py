"""The HyperparameterSearch pass against the real apiserver: trial ModelVersions, parallelism, best, the end.

Passes are driven here as the operator's pass loop would (step, then a status write carrying the
resourceVersion the step read). The in-cluster operator is paused during integration tests and no
ModelVersion controller runs here, so the tests play it: they write the trial ModelVersions' status
(Ready / Rejected with metrics) to simulate finished training.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from test_operator_references import apply, condition, crds, get  # noqa: F401  (shared fixtures and helpers)

from mlops_operator.handlers.hyperparametersearch import PLURAL, step
from mlops_operator.handlers.reconciler import Context
from mlops_operator.logic.status import Event, status_delta
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube
from tests.conftest import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SEARCH = "bc-search"
SPACE = {"n_estimators": {"values": [50, 100, 200]}, "max_depth": {"min": 2, "max": 6, "type": "int"},
         "learning_rate": {"min": 0.01, "max": 0.3, "scale": "log"}}


def search(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "HyperparameterSearch", "metadata": {"name": SEARCH},
            "spec": {"model": "breast-cancer",
                     "template": {"labels": {"channel": "candidates"},
                                  "training": {"dataset": {"builtin": "breast_cancer"},
                                               "estimator": "sklearn.ensemble.GradientBoostingClassifier",
                                               "hyperparameters": {"subsample": 0.8},
                                               "metrics": ["roc_auc", "accuracy"]},
                                  "gates": {"minMetrics": {"accuracy": 0.9}}},
                     "space": SPACE, "algorithm": "random", "objective": {"metric": "roc_auc"},
                     "maxTrials": 3, "parallelism": 2, "registerBest": True, **spec}}


async def drive(namespace: str, limit: int = 20) -> list[Event]:
    """Passes until one changes nothing; the events they asked for."""
    events: list[Event] = []
    for _ in range(limit):
        obj = await kube.get_custom(PLURAL, namespace, SEARCH)
        ctx = Context(kind="HyperparameterSearch", plural=PLURAL, settings=operator_settings(),
                      now=datetime.now(timezone.utc), logger=logging.getLogger("test"), failures=0)
        outcome = await step(obj, ctx)
        assert not outcome.retry, outcome.status.get("conditions")
        delta = status_delta(obj.get("status") or {}, outcome.status)
        if delta:
            await kube.patch_status(PLURAL, namespace, SEARCH, delta,
                                    resource_version=obj["metadata"]["resourceVersion"])
        events.extend(outcome.events)
        if not delta and not outcome.acted:
            return events
    raise AssertionError(f"still changing after {limit} passes")


def finish(namespace: str, name: str, phase: str, roc_auc: float, message: str = "every gate passed") -> None:
    """What the ModelVersion controller would write when the trial's training and gates are done."""
    ready = {"type": "Ready", "status": "True" if phase == "Ready" else "False",
             "reason": "GatesPassed" if phase == "Ready" else "GatesFailed", "message": message,
             "lastTransitionTime": "2026-03-01T12:00:00Z"}
    status = {"phase": phase, "stage": "None", "metrics": {"roc_auc": roc_auc, "accuracy": 0.93},
              "conditions": [ready]}
    kubectl("-n", namespace, "patch", "modelversion", name, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": status}))


def trial_versions(namespace: str) -> dict[str, dict[str, Any]]:
    proc = kubectl("-n", namespace, "get", "modelversions", "-l", f"mlops.dev/hyperparametersearch={SEARCH}",
                   "-o", "json")
    return {mv["metadata"]["name"]: mv for mv in json.loads(proc.stdout)["items"]}


def status_of(namespace: str) -> dict[str, Any]:
    return (get(namespace, "hyperparametersearch", SEARCH) or {}).get("status") or {}


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events]


async def test_given_a_search_when_trials_finish_then_the_next_start_and_the_best_is_registered_at_max_trials(
        crds, namespace):
    apply(namespace, search())
    events = await drive(namespace)
    mvs = trial_versions(namespace)
    assert sorted(mvs) == ["bc-search-t1", "bc-search-t2"]  # parallelism 2 of maxTrials 3
    status = status_of(namespace)
    assert [(t["name"], t["state"]) for t in status["trials"]] == [("bc-search-t1", "Running"),
                                                                    ("bc-search-t2", "Running")]
    assert status["phase"] == "Running" and reasons(events).count("TrialCreated") == 2
    t1 = mvs["bc-search-t1"]
    params = status["trials"][0]["parameters"]
    assert t1["spec"]["training"]["hyperparameters"] == {"subsample": 0.8, **params}
    assert isinstance(params["max_depth"], int) and 0.01 <= params["learning_rate"] <= 0.3
    assert t1["metadata"]["labels"]["channel"] == "candidates" and t1["metadata"]["labels"]["mlops.dev/trial"] == "1"
    assert "ownerReferences" not in t1["metadata"]
    assert t1["spec"]["gates"] == {"minMetrics": {"accuracy": 0.9}}

    finish(namespace, "bc-search-t1", "Ready", 0.95)
    events = await drive(namespace)
    assert sorted(trial_versions(namespace)) == ["bc-search-t1", "bc-search-t2", "bc-search-t3"]
    status = status_of(namespace)
    assert status["trials"][0]["state"] == "Succeeded" and status["trials"][0]["value"] == 0.95
    assert status["best"]["trial"] == "bc-search-t1" and reasons(events) == ["TrialFinished", "TrialCreated"]

    finish(namespace, "bc-search-t2", "Rejected", 0.99, "accuracy 0.88 < 0.9")
    await drive(namespace)
    status = status_of(namespace)
    assert status["trials"][1]["state"] == "Failed" and status["trials"][1]["value"] == 0.99
    assert "rejected by its gates" in status["trials"][1]["message"]
    assert status["best"]["trial"] == "bc-search-t1" and len(status["trials"]) == 3  # maxTrials reached

    finish(namespace, "bc-search-t3", "Ready", 0.97)
    events = await drive(namespace)
    status = status_of(namespace)
    assert status["phase"] == "Succeeded" and status["completedTrials"] == 3
    assert status["best"] == {"trial": "bc-search-t3", "parameters": status["trials"][2]["parameters"], "value": 0.97}
    assert status["registeredVersion"] == "bc-search-t3"
    assert condition(get(namespace, "hyperparametersearch", SEARCH), "Ready")["status"] == "True"
    assert reasons(events) == ["TrialFinished", "SearchSucceeded", "BestRegistered"]
    labelled = kubectl("-n", namespace, "get", "modelversions", "-l", f"mlops.dev/best-of={SEARCH}", "-o", "name")
    assert labelled.stdout.split() == ["modelversion.mlops.dev/bc-search-t3"]
    assert await drive(namespace) == []  # settled: nothing more to do


async def test_given_a_lost_status_write_after_a_create_then_the_same_trial_is_found_not_duplicated(crds, namespace):
    apply(namespace, search(parallelism=1))
    obj = await kube.get_custom(PLURAL, namespace, SEARCH)
    ctx = Context(kind="HyperparameterSearch", plural=PLURAL, settings=operator_settings(),
                  now=datetime.now(timezone.utc), logger=logging.getLogger("test"), failures=0)
    recorded = await step(obj, ctx)  # records t1's parameters ...
    obj = await kube.patch_status(PLURAL, namespace, SEARCH, recorded.status,
                                  resource_version=obj["metadata"]["resourceVersion"])
    first = await step(obj, ctx)     # ... creates it; then, as after a crash, a pass from the same status
    second = await step(obj, ctx)    # finds it under the recorded name instead of sampling a new trial
    assert first.acted and not second.acted and not second.retry
    assert [(t["name"], t["state"]) for t in second.status["trials"]] == [("bc-search-t1", "Running")]
    assert reasons(second.events) == ["TrialCreated"]
    [mv] = trial_versions(namespace).values()
    assert mv["spec"]["training"]["hyperparameters"] == {"subsample": 0.8, **recorded.status["trials"][0]["parameters"]}


async def test_given_a_space_edit_after_the_first_trial_then_refused_and_max_trials_edits_apply(crds, namespace):
    apply(namespace, search(maxTrials=1, parallelism=1))
    await drive(namespace)
    finish(namespace, "bc-search-t1", "Ready", 0.9)
    await drive(namespace)
    assert status_of(namespace)["phase"] == "Succeeded"

    edited = search(maxTrials=2, parallelism=1)
    edited["spec"]["space"] = {"n_estimators": {"values": [10, 20]}}
    apply(namespace, edited)
    events = await drive(namespace)
    hps = get(namespace, "hyperparametersearch", SEARCH)
    assert condition(hps, "InvalidSpec")["reason"] == "SpecChangeNotSupported"
    assert "SpecChangeNotSupported" in reasons(events) and len(hps["status"]["trials"]) == 1

    apply(namespace, search(maxTrials=2, parallelism=1))  # the space reverted; only maxTrials raised
    await drive(namespace)
    hps = get(namespace, "hyperparametersearch", SEARCH)
    assert condition(hps, "InvalidSpec")["status"] == "False"
    assert hps["status"]["phase"] == "Running" and sorted(trial_versions(namespace)) == ["bc-search-t1", "bc-search-t2"]


async def test_given_a_search_recreated_under_its_name_then_the_old_trials_stay_and_new_ones_get_other_names(
        crds, namespace):
    apply(namespace, search(maxTrials=1, parallelism=1))
    await drive(namespace)
    old_uid = get(namespace, "hyperparametersearch", SEARCH)["metadata"]["uid"]
    kubectl("-n", namespace, "delete", "hyperparametersearch", SEARCH, "--wait=true")
    assert get(namespace, "modelversion", "bc-search-t1") is not None  # a trial outlives its search

    apply(namespace, search(maxTrials=1, parallelism=1))
    events = await drive(namespace)
    uid = get(namespace, "hyperparametersearch", SEARCH)["metadata"]["uid"]
    assert uid != old_uid and "TrialNameTaken" in reasons(events)
    fallback = f"bc-search-{uid[:5]}-t1"
    assert status_of(namespace)["trials"][0] == {**status_of(namespace)["trials"][0], "name": fallback,
                                                 "state": "Running"}
    mv = get(namespace, "modelversion", fallback)
    assert mv["metadata"]["annotations"]["mlops.dev/hyperparametersearch-uid"] == uid
