"""KServe InferenceService: the predictor is the version that gets canaryTrafficPercent."""

from __future__ import annotations

import pytest

from mlops_operator.builders.serving import annotated_versions
from mlops_operator.builders.traffic_kserve import build_inference_service
from mlops_operator.logic.rollout.state import Routes

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}
URIS = {"v1": "s3://mlops/models/breast-cancer/v1/", "v2": "s3://mlops/models/breast-cancer/v2/"}


@pytest.mark.parametrize("routes, storage, percent", [
    (Routes("v1"), "v1", None),
    (Routes("v1", "v2", 0), "v2", 0),
    (Routes("v1", "v2", 20), "v2", 20),
])
def test_given_routes_when_the_inference_service_is_built_then_latest_revision_gets_the_canary_percent(routes, storage, percent):
    isvc = build_inference_service(OWNER, "breast-cancer", routes, URIS, replicas=2)
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == URIS[storage].rstrip("/")
    assert predictor["model"]["modelFormat"] == {"name": "sklearn"}
    assert predictor.get("canaryTrafficPercent") == percent
    assert predictor["minReplicas"] == 2
    assert isvc["metadata"]["name"] == "bc" and isvc["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"


def test_given_a_rollback_when_rebuilt_then_stable_is_the_predictor_without_a_percentage():
    isvc = build_inference_service(OWNER, "breast-cancer", Routes("v1"), URIS)
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert annotated_versions(isvc) == frozenset({"v1"})
    canary = build_inference_service(OWNER, "breast-cancer", Routes("v1", "v2", 20), URIS)
    assert annotated_versions(canary) == frozenset({"v1", "v2"})


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_given_compiled_model_setting_when_runtime_is_kserve_then_the_inference_service_is_unchanged_sklearn(setting):
    plain = build_inference_service(OWNER, "breast-cancer", Routes("v1", "v2", 20), URIS)
    owner = {**OWNER, "spec": {"serving": {"runtime": "kserve", "compiledModel": setting}}}
    compiled = build_inference_service(owner, "breast-cancer", Routes("v1", "v2", 20), URIS)
    assert compiled == plain and compiled["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
