"""``pod`` overrides: the merge of chart defaults and a resource's own block, and every pod builder applying it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.featureset import FeatureSet
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.api.v1alpha1.pod import PodOverrides, merge_pod_overrides, parse_pod_defaults
from mlops_operator.builders.job import TrainingJobInput, build_training_job
from mlops_operator.builders.pod import RUNTIME_UID
from mlops_operator.builders.serving import RouterInput, ServingInput, build_router_deployment, build_serving_deployment
from mlops_operator.logic import featureset as fs_logic
from mlops_operator.logic import modelversion as mv_logic
from mlops_operator.logic.jobs import JobSettings
from tests.pod_security import assert_restricted

pytestmark = pytest.mark.unit

MD_OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}
MV_OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": "bc-v7", "namespace": "team-a", "uid": "uid-2"}}
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
FULL = PodOverrides.model_validate({
    "serviceAccountName": "bc-serving", "imagePullSecrets": [{"name": "registry"}], "nodeSelector": {"pool": "ml"},
    "tolerations": [TOLERATION], "priorityClassName": "serving",
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
})


def _serving(pod: PodOverrides | None) -> dict:
    return build_serving_deployment(ServingInput(
        owner=MD_OWNER, model="breast-cancer", version="bc-v7", role="stable", replicas=1,
        artifact_uri="s3://mlops/models/team-a/breast-cancer/bc-v7", image="img", s3_secret="mlops-s3",
        pod=pod))["spec"]["template"]["spec"]


def _training(pod: PodOverrides | None) -> dict:
    return build_training_job(TrainingJobInput(
        owner=MV_OWNER, model="breast-cancer", training={"dataset": {"builtin": "iris"}},
        artifact_prefix="s3://mlops/models/team-a/breast-cancer/bc-v7/", image="img", s3_secret="mlops-s3",
        active_deadline_seconds=60, resources={"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
        pod=pod))["spec"]["template"]["spec"]


# ------------------------------------------------------------------------------------------------ merge


def test_given_defaults_and_own_block_when_merged_then_own_fields_win_and_maps_merge_by_key():
    defaults = PodOverrides.model_validate({"nodeSelector": {"pool": "general", "zone": "a"},
                                            "tolerations": [TOLERATION], "priorityClassName": "low",
                                            "imagePullSecrets": [{"name": "corp-registry"}]})
    own = PodOverrides.model_validate({"nodeSelector": {"pool": "ml"}, "priorityClassName": "high",
                                       "tolerations": []})
    merged = merge_pod_overrides(defaults, own).to_dict()
    assert merged["nodeSelector"] == {"pool": "ml", "zone": "a"}
    assert merged["priorityClassName"] == "high"
    assert merged["tolerations"] == []                        # an explicit empty list replaces the default
    assert merged["imagePullSecrets"] == [{"name": "corp-registry"}]


def test_given_only_one_side_when_merged_then_that_side_is_the_result():
    assert merge_pod_overrides(None, None) is None
    assert merge_pod_overrides(FULL, None) is FULL
    assert merge_pod_overrides(None, FULL) is FULL


def test_given_platform_ids_by_default_and_a_user_id_on_the_resource_when_merged_then_the_resource_ids_win_whole():
    defaults = PodOverrides.model_validate({"securityContext": {"omitIds": True, "supplementalGroups": [5]}})
    own = PodOverrides.model_validate({"securityContext": {"runAsUser": 2000}})
    ctx = merge_pod_overrides(defaults, own).security_context
    assert (ctx.run_as_user, ctx.omit_ids, ctx.supplemental_groups) == (2000, False, [5])


def test_given_chart_defaults_json_when_parsed_then_empty_means_none_and_bad_input_names_the_field():
    assert parse_pod_defaults("") is None and parse_pod_defaults("{}") is None
    assert parse_pod_defaults('{"nodeSelector": {"pool": "ml"}}').node_selector == {"pool": "ml"}
    with pytest.raises(ValidationError, match="tolerations"):
        parse_pod_defaults('{"tolerations": [{"operator": "Sometimes"}]}')


@pytest.mark.parametrize("context", [{"runAsUser": 0}, {"privileged": True}, {"allowPrivilegeEscalation": True}])
def test_given_a_security_override_that_would_lift_restricted_when_parsed_then_it_is_refused(context):
    with pytest.raises(ValidationError):
        PodOverrides.model_validate({"containerSecurityContext": context})


# --------------------------------------------------------------------------------------------- builders


def test_given_no_overrides_when_built_then_pods_keep_the_fixed_runtime_uid_and_no_token():
    for spec in (_serving(None), _training(None)):
        assert spec["securityContext"]["runAsUser"] == RUNTIME_UID
        assert spec["automountServiceAccountToken"] is False
        assert "serviceAccountName" not in spec and "tolerations" not in spec


def test_given_full_overrides_when_serving_built_then_the_server_pod_carries_every_one_and_stays_restricted():
    spec = _serving(FULL)
    assert spec["serviceAccountName"] == "bc-serving"
    assert spec["automountServiceAccountToken"] is False  # an identity without an API token unless asked
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["nodeSelector"] == {"pool": "ml"}
    assert spec["tolerations"] == [TOLERATION]
    assert spec["priorityClassName"] == "serving"
    assert spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100
    assert_restricted(spec)


def test_given_full_overrides_when_router_built_then_it_gets_placement_and_pull_secrets_but_no_service_account():
    spec = build_router_deployment(RouterInput(MD_OWNER, "breast-cancer", "img", pod=FULL))["spec"]["template"]["spec"]
    assert "serviceAccountName" not in spec
    assert spec["tolerations"] == [TOLERATION] and spec["imagePullSecrets"] == [{"name": "registry"}]
    assert_restricted(spec)


def test_given_platform_assigned_ids_when_built_then_ids_are_left_out_and_the_pod_stays_non_root():
    pod = PodOverrides.model_validate({"securityContext": {"omitIds": True},
                                       "containerSecurityContext": {"seLinuxOptions": {"level": "s0:c26,c5"}}})
    for spec in (_serving(pod), _training(pod)):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(spec["securityContext"])
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["containers"][0]["securityContext"]["seLinuxOptions"] == {"level": "s0:c26,c5"}
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_given_an_identity_with_token_when_training_built_then_the_job_pod_carries_it():
    pod = PodOverrides.model_validate({"serviceAccountName": "trainer", "automountServiceAccountToken": True,
                                       "securityContext": {"runAsUser": 4242, "fsGroup": 4242}})
    spec = _training(pod)
    assert (spec["serviceAccountName"], spec["automountServiceAccountToken"]) == ("trainer", True)
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["fsGroup"]) == (4242, 4242)
    assert_restricted(spec)


# --------------------------------------------------------------------------------------- through logic


def _mv(pod: dict | None) -> ModelVersion:
    training = {"dataset": {"builtin": "iris"}, "estimator": "sklearn.linear_model.LogisticRegression"}
    if pod is not None:
        training["pod"] = pod
    return ModelVersion.model_validate({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
                                        "metadata": {**MV_OWNER["metadata"]}, "spec": {"model": "iris",
                                                                                       "training": training}})


def test_given_training_pod_and_chart_defaults_when_the_job_is_built_then_both_apply_and_the_trainer_never_sees_them():
    world = mv_logic.World(artifact_prefix="s3://mlops/models/team-a/iris/bc-v7/")
    cfg = JobSettings(image="img", s3_secret="mlops-s3",
                      pod_defaults=PodOverrides.model_validate({"imagePullSecrets": [{"name": "corp"}],
                                                                "nodeSelector": {"pool": "batch"}}))
    job = mv_logic.build_job(_mv({"tolerations": [TOLERATION]}), world, cfg)
    spec = job["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "corp"}] and spec["tolerations"] == [TOLERATION]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert '"pod"' not in env["MLOPS_TRAINING"]


def test_given_two_versions_differing_only_in_pod_when_hashed_then_the_spec_hash_is_equal():
    assert mv_logic.spec_hash(_mv(None)) == mv_logic.spec_hash(_mv({"nodeSelector": {"pool": "ml"}}))


def test_given_materialize_pod_and_defaults_when_the_job_is_built_then_the_materialize_pod_carries_them():
    fs = FeatureSet.model_validate({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet",
        "metadata": {"name": "bc-features", "namespace": "team-a", "uid": "uid-3"},
        "spec": {"source": {"builtin": "breast_cancer"}, "entityKey": "id",
                 "features": [{"name": "mean radius", "dtype": "float"}],
                 "materialize": {"pod": {"serviceAccountName": "features", "priorityClassName": "batch"}}}})
    cfg = JobSettings(image="img", s3_secret="mlops-s3",
                      pod_defaults=PodOverrides.model_validate({"priorityClassName": "low", "nodeSelector": {"a": "b"}}))
    job = fs_logic.build_job(fs, {"activeVersion": "v1"}, "mlops", cfg)
    spec = job["spec"]["template"]["spec"]
    assert (spec["serviceAccountName"], spec["priorityClassName"], spec["nodeSelector"]) == (
        "features", "batch", {"a": "b"})
    assert_restricted({**spec, "containers": [{**c, "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}}
                                              for c in spec["containers"]]})


def test_given_a_batch_prediction_pod_block_when_its_job_is_built_then_the_scoring_pod_carries_it():
    from mlops_operator.builders.batchprediction import BatchJobInput, build_batch_job

    job = build_batch_job(BatchJobInput(
        owner={"apiVersion": "mlops.dev/v1alpha1", "kind": "BatchPrediction",
               "metadata": {"name": "score", "namespace": "team-a", "uid": "uid-4"}},
        run="r1", output_prefix="s3://m/predictions/team-a/score/r1/", model_uri="s3://m/x/", model_sha256="a" * 64,
        model_version="bc-v7", input={"uri": "s3://m/in.parquet"}, passthrough=(), chunk_rows=100, image="img",
        s3_secret="mlops-s3", pod=merge_pod_overrides(PodOverrides(priority_class_name="batch"), FULL)))
    spec = job["spec"]["template"]["spec"]
    assert (spec["serviceAccountName"], spec["priorityClassName"], spec["tolerations"]) == (
        "bc-serving", "serving", [TOLERATION])
