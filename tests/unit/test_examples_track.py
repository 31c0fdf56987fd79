"""manifests/examples/ applied together: the example ModelDeployment never serves a trial of the example
HyperparameterSearch (trials are experiments, not releases), while a version the example RetrainPolicy
trains is picked up. Every trial is built by the real trial builder and mapped to what the rollout logic
sees by the real handler mapping, then resolved by the real `track` logic."""

from __future__ import annotations

import pathlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearch
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.builders.names import label_value
from mlops_operator.builders.retrain import RetrainInput, build_model_version, model_version_name
from mlops_operator.builders.trial import LABEL_BEST_OF, TrialInput, build_trial, trial_name
from mlops_operator.logic.rollout.state import Observations
from mlops_operator.logic.rollout.version_index import version_info
from mlops_operator.logic.rollout.versions import resolve

pytestmark = pytest.mark.unit

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "examples"
NAMESPACE = "team-a"
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def examples() -> list[dict[str, Any]]:
    docs = [d for path in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    assert {d["kind"] for d in docs} >= {"ModelDeployment", "HyperparameterSearch", "ModelVersion", "RetrainPolicy"}
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def registered(body: dict[str, Any], minutes: int) -> dict[str, Any]:
    """``body`` as the ModelVersion controller leaves it once Ready (created ``minutes`` after T0)."""
    meta = {**body["metadata"], "namespace": NAMESPACE,
            "creationTimestamp": (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")}
    name = meta["name"]
    return {**body, "metadata": meta, "status": {
        "phase": "Ready", "artifact": {"uri": f"s3://mlops/models/{body['spec']['model']}/{name}/", "sha256": "a" * 64}}}


def trials_of(search: dict[str, Any], first_minute: int) -> list[dict[str, Any]]:
    """Every trial the search can create (maxTrials of them), the last one labelled as the registered best."""
    hps = HyperparameterSearch.from_body(search)
    name = search["metadata"]["name"]
    trials = []
    for n in range(1, hps.spec.max_trials + 1):
        body = build_trial(TrialInput(search=name, search_uid="uid-1", spec=hps.spec, number=n,
                                      name=trial_name(name, n), parameters={}))
        trials.append(registered(body, first_minute + n))
    if hps.spec.register_best:
        trials[-1]["metadata"]["labels"][LABEL_BEST_OF] = label_value(name)
    return trials


def desired(deployment: dict[str, Any], bodies: list[dict[str, Any]]) -> str | None:
    md = ModelDeployment.from_body(deployment)
    versions = {info.name: info for info in map(version_info, bodies)}
    obs = Observations(namespace=NAMESPACE, name=deployment["metadata"]["name"], versions=versions, workloads={})
    return resolve(md.spec, obs).version


def test_given_the_examples_applied_together_when_every_trial_is_ready_and_newest_then_none_is_served():
    docs = examples()
    releases = [registered(mv, 0) for mv in of_kind(docs, "ModelVersion")]
    deployments = [d for d in of_kind(docs, "ModelDeployment") if d["spec"].get("track")]
    searches = of_kind(docs, "HyperparameterSearch")
    assert deployments and searches and releases
    for deployment in deployments:
        for search in searches:
            trials = trials_of(search, first_minute=10)
            assert len(trials) == search["spec"]["maxTrials"]
            trial_names = {t["metadata"]["name"] for t in trials}
            # Each trial alone next to the releases, and all of them at once (the best one last and newest).
            for world in [[trial] for trial in trials] + [trials]:
                chosen = desired(deployment, releases + world)
                assert chosen not in trial_names, f"{deployment['metadata']['name']} would serve trial {chosen}"
                if search["spec"]["model"] == deployment["spec"]["model"]:
                    assert chosen in {mv["metadata"]["name"] for mv in releases}


def test_given_the_examples_when_the_retrain_policy_trains_a_newer_version_then_the_deployment_follows_it():
    """The exclusion is of trials only: a newer regular version of the model is still picked up."""
    docs = examples()
    deployment = next(d for d in of_kind(docs, "ModelDeployment") if d["spec"].get("track"))
    policy = RetrainPolicy.from_body(of_kind(docs, "RetrainPolicy")[0])
    name = model_version_name(policy.metadata["name"], 1)
    retrained = build_model_version(RetrainInput(
        policy=policy.metadata["name"], namespace=NAMESPACE, policy_uid="uid-2", model=policy.spec.model,
        template=policy.spec.template, name=name, source="alert", detail="MLOpsFeatureDriftHigh"))
    search = of_kind(docs, "HyperparameterSearch")[0]
    bodies = [registered(mv, 0) for mv in of_kind(docs, "ModelVersion")] + trials_of(search, first_minute=10)
    assert desired(deployment, bodies + [registered(retrained, 5)]) == name
