"""HyperparameterSearch on the real cluster: every trial is a ModelVersion trained by its own Job, at most
`parallelism` at once; the best Ready trial by the objective is labelled as the search's registered version,
which a ModelDeployment can follow with `track.matchLabels: {mlops.dev/best-of: <search>}`."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e


def _search(name: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "HyperparameterSearch", "metadata": {"name": name},
            "spec": {"model": kit.MODEL, "template": {"training": {
                "dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.ensemble.RandomForestClassifier",
                "hyperparameters": {"random_state": 3}, "metrics": ["roc_auc", "accuracy"]},
                "gates": {"minMetrics": {"accuracy": 0.8}}},
                "space": {"n_estimators": {"values": [5, 20]}, "max_depth": {"min": 1, "max": 6, "type": "int"}},
                "algorithm": "random", "objective": {"metric": "roc_auc", "goal": "maximize"},
                "maxTrials": 3, "parallelism": 2, "registerBest": True}}


def test_given_a_search_then_trials_train_as_modelversions_and_the_best_is_registered(user_namespace):
    ns, name = user_namespace, f"bc-hps-{uuid.uuid4().hex[:5]}"
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_search(name)))
    deadline, st, most_active = time.monotonic() + 480, {}, 0
    while time.monotonic() < deadline:
        st = (kit.get(ns, "hps", name) or {}).get("status") or {}
        running = [t for t in st.get("trials") or [] if t.get("state") in ("Pending", "Running")]
        most_active = max(most_active, len(running))
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    assert st.get("phase") == "Succeeded", st
    trials = st["trials"]
    assert len(trials) == 3 and most_active <= 2, trials
    values = {}
    for t in trials:
        mv = kit.get(ns, "mv", t["name"])
        assert mv is not None, t
        assert mv["metadata"]["labels"]["mlops.dev/hyperparametersearch"] == name
        hp = mv["spec"]["training"]["hyperparameters"]
        assert hp["random_state"] == 3 and {k: hp[k] for k in t["parameters"]} == t["parameters"], (hp, t)
        assert t["parameters"]["n_estimators"] in (5, 20) and 1 <= t["parameters"]["max_depth"] <= 6, t
        if t["state"] == "Succeeded":
            assert mv["status"]["phase"] == "Ready" and mv["status"]["metrics"]["roc_auc"] == t["value"], (mv["status"], t)
            values[t["name"]] = t["value"]
    assert values, trials
    best = max(values, key=values.get)
    assert st["best"]["trial"] == best and st["best"]["value"] == values[best], st["best"]
    assert st["registeredVersion"] == best
    labelled = json.loads(kubectl("-n", ns, "get", "mv", "-l", f"mlops.dev/best-of={name}", "-o", "json").stdout)["items"]
    assert [m["metadata"]["name"] for m in labelled] == [best]
