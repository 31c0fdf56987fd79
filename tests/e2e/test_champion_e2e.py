"""A fair champion/challenger on the real cluster: a ModelDeployment serves a stable version; challengers with
``mustBeatStable`` are trained by Jobs that also score the stable version on the challenger's own test rows.

The worse challenger (a constant predictor) ends ``Rejected`` with both scores, the margin and the stable
version in status, in its conditions and in its events (``kubectl describe``), and the deployment keeps
serving the stable version. The better one (a random forest against a stump split at a random
threshold) passes on the same rows and the deployment, which tracks the channel, rolls it out. The stable version's same-rows score is
checked against scoring it here, in-process, on the challenger's split.
"""

from __future__ import annotations

import io
import json

import httpx
import joblib
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.providers.storage import ArtifactStore
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase

pytestmark = pytest.mark.e2e

SPLIT = {"testFraction": 0.25, "seed": 7, "stratify": True}   # the challengers' split: not the stable one's
MARGIN = 0.01


def _version(name: str, channel: dict, estimator: str, hyperparameters: dict, split: dict | None = None,
             gates: dict | None = None) -> dict:
    training = {"dataset": {"builtin": "breast_cancer"}, "estimator": estimator, "hyperparameters": hyperparameters,
                "metrics": ["accuracy", "roc_auc"], **({"split": split} if split else {})}
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name, "labels": channel},
            "spec": {"model": kit.MODEL, "training": training, **({"gates": gates} if gates else {})}}


def _challenger(name: str, channel: dict, estimator: str, hyperparameters: dict) -> dict:
    gates = {"mustBeatStable": {"modelDeployment": "bc", "metric": "accuracy", "margin": MARGIN}}
    return _version(name, channel, estimator, hyperparameters, SPLIT, gates)


def _apply(ns: str, body: dict) -> None:
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(body))


def _same_rows_accuracy(stable_uri: str) -> float:
    """The stable version scored here: its verified model.joblib on the challengers' test split."""
    store = ArtifactStore.from_settings()
    model = joblib.load(io.BytesIO(store.fetch_verified(stable_uri, "model.joblib")))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    _, X_test, _, y_test = train_test_split(X, y, test_size=SPLIT["testFraction"], random_state=SPLIT["seed"],
                                            stratify=y)
    return float(accuracy_score(y_test, model.predict(X_test)))


def _served_version(base: str) -> str:
    row = kit.ROWS[0]
    r = httpx.post(f"{base}/v2/models/{kit.MODEL}/infer", timeout=10, json={"inputs": [
        {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def test_given_a_served_stable_version_then_a_worse_challenger_is_rejected_on_the_same_rows_and_a_better_one_rolls_out(
        user_namespace, s3_env):
    ns = user_namespace
    stable, worse, better = kit.unique_names("stump", "dummy", "forest")
    channel = {"channel": f"champion-{stable}"}
    # A weak but servable stable version (scikit-learn is pinned: accuracy 0.83 on its own split, 0.80 on
    # the challengers' rows; the forest gets 0.95 there, the constant predictor 0.63).
    _apply(ns, _version(stable, channel, "sklearn.tree.DecisionTreeClassifier",
                        {"max_depth": 1, "splitter": "random", "random_state": 0}))
    assert wait_for_phase(ns, "mv", stable, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    md = kit.deployment(stable, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE))
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = kit.deploy_first(ns, md, first=stable)
    stable_mv = kit.get(ns, "mv", stable)
    expected_baseline = _same_rows_accuracy(stable_mv["status"]["artifact"]["uri"])
    # The fair bar is not the number the stable version recorded on its own test rows.
    assert expected_baseline != pytest.approx(stable_mv["status"]["metrics"]["accuracy"]), stable_mv["status"]

    # 1. A constant predictor: not better than the stump on the same rows -> Rejected, nothing rolls out.
    _apply(ns, _challenger(worse, channel, "sklearn.dummy.DummyClassifier", {"strategy": "most_frequent"}))
    mv = wait_for_phase(ns, "mv", worse, {"Ready", "Rejected", "Failed"}, 420)
    st = mv["status"]
    assert st["phase"] == "Rejected", st
    (result,) = st["gateResults"]
    assert result["gate"] == "mustBeatStable" and result["comparison"] == "sameRows" and not result["passed"], result
    assert result["baselineVersion"] == stable and result["margin"] == MARGIN and result["rows"] == 143, result
    assert result["baseline"] == pytest.approx(expected_baseline, abs=1e-12), result
    assert result["value"] == st["metrics"]["accuracy"] and result["value"] < result["baseline"], result
    ready = get_condition(st["conditions"], "Ready")
    assert ready["reason"] == "GatesFailed", ready
    for fragment in (f"accuracy {result['value']:.6g}", f"stable {stable} ({result['baseline']:.6g}",
                     "on the same 143 test rows", f"margin {MARGIN:g}"):
        assert fragment in ready["message"], ready["message"]
    described = kubectl("-n", ns, "describe", "mv", worse).stdout
    assert "Rejected" in described and f"does not beat stable {stable}" in described, described
    assert f"{result['baseline']:.6g}" in described and f"{result['value']:.6g}" in described, described
    # The stable version keeps serving: the deployment never took the rejected version as a candidate.
    md_status = kit.status(ns)
    assert md_status["stableVersion"] == stable and md_status.get("phase") == "Succeeded", md_status
    assert md_status.get("desiredVersion") in (None, stable), md_status
    assert _served_version(base) == stable
    assert kit.stage(ns, stable) == "Production" and kit.stage(ns, worse) != "Production"

    # 2. A random forest beats the stump on the same rows by the margin -> Ready, and the tracked channel rolls out.
    _apply(ns, _challenger(better, channel, "sklearn.ensemble.RandomForestClassifier",
                           {"n_estimators": 30, "random_state": 1}))
    mv = wait_for_phase(ns, "mv", better, {"Ready", "Rejected", "Failed"}, 420)
    st = mv["status"]
    assert st["phase"] == "Ready", st
    (result,) = st["gateResults"]
    assert result["comparison"] == "sameRows" and result["passed"] and result["baselineVersion"] == stable, result
    assert result["baseline"] == pytest.approx(expected_baseline, abs=1e-12), result
    assert result["value"] >= result["baseline"] + MARGIN - 1e-12, result
    assert f"beats stable {stable}" in get_condition(st["conditions"], "Ready")["message"]
    final = kit.watch(ns, lambda s: s.get("stableVersion") == better and s.get("phase") == "Succeeded", 300)
    assert final["stableVersion"] == better, final
    assert _served_version(base) == better
