"""The training Job manifest: deterministic names, restricted pod security, secrets by reference."""

from __future__ import annotations

import json

import pytest

from mlops_operator.builders.job import TrainingJobInput, build_training_job, training_job_name
from mlops_operator.builders.labels import (
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_MODELVERSION,
    model_labels,
)
from mlops_operator.builders.names import child_name, label_value

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
         "metadata": {"name": "bc-v7", "namespace": "team-a", "uid": "1234-abcd"}}
TRAINING = {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
            "timeout": "30m"}


def _input(**overrides) -> TrainingJobInput:
    values = dict(owner=OWNER, model="breast-cancer", training=TRAINING,
                  artifact_prefix="s3://mlops/models/breast-cancer/bc-v7/", image="localhost/mlops-runtime:dev",
                  s3_secret="mlops-s3", active_deadline_seconds=1800)
    values.update(overrides)
    return TrainingJobInput(**values)


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in _container(job)["env"]}


@pytest.mark.parametrize("name, expected", [
    ("bc-v7", "mv-bc-v7-train"),
    ("a" * 54, "mv-" + "a" * 54 + "-train"),  # exactly 63: kept as is
])
def test_given_short_name_when_named_then_job_name_is_mv_name_train(name, expected):
    assert training_job_name(name) == expected
    assert len(expected) <= 63


def test_given_long_names_sharing_a_prefix_when_named_then_distinct_valid_63_char_names():
    first, second = training_job_name("x" * 100 + "-one"), training_job_name("x" * 100 + "-two")
    assert first != second
    for name in (first, second):
        assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert training_job_name("x" * 100 + "-one") == first  # deterministic


def test_given_name_with_dots_near_the_cut_when_truncated_then_no_trailing_separator_before_hash():
    name = child_name("mv", "a" * 44 + "." + "b" * 30, "train")
    head, _, digest = name.rpartition("-")
    assert len(digest) == 8 and not head.endswith((".", "-"))


@pytest.mark.parametrize("value", ["breast-cancer", "x" * 63, "a.b_c-d"])
def test_given_valid_label_value_when_sanitized_then_unchanged(value):
    assert label_value(value) == value


@pytest.mark.parametrize("value", ["x" * 64, "-bad-", "has space", "y" * 200 + "."])
def test_given_invalid_label_value_when_sanitized_then_valid_and_hashed(value):
    out = label_value(value)
    assert len(out) <= 63 and out[0].isalnum() and out[-1].isalnum()
    assert out != value


def test_given_input_when_built_then_labels_and_controller_owner_reference():
    job = build_training_job(_input())
    meta = job["metadata"]
    assert meta["name"] == "mv-bc-v7-train" and meta["namespace"] == "team-a"
    assert meta["labels"][LABEL_MODEL] == "breast-cancer"
    assert meta["labels"][LABEL_MODELVERSION] == "bc-v7"
    assert meta["labels"][LABEL_MANAGED_BY] == "mlops-operator"
    assert job["spec"]["template"]["metadata"]["labels"] == meta["labels"]
    assert meta["ownerReferences"] == [{"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "name": "bc-v7",
                                        "uid": "1234-abcd", "controller": True, "blockOwnerDeletion": True}]


def test_given_input_when_built_then_pod_meets_restricted_pod_security_with_read_only_root():
    job = build_training_job(_input())
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _container(job)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in _container(job)["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"


def test_given_input_when_built_then_credentials_only_by_secret_key_ref():
    job = build_training_job(_input(s3_secret="team-s3"))
    env = _env(job)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "S3_ENDPOINT_URL"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"
        assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key
    assert env["S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"].get("optional") is True
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"].get("optional") is None


def test_given_input_when_built_then_trainer_env_follows_its_contract():
    env = _env(build_training_job(_input(extra_env={"MLOPS_FEATURESET_URI": "s3://mlops/features/f/v1/"})))
    assert env["MLOPS_MODEL"]["value"] == "breast-cancer"
    assert env["MLOPS_MODEL_VERSION"]["value"] == "bc-v7"
    assert json.loads(env["MLOPS_TRAINING"]["value"]) == TRAINING
    assert env["MLOPS_ARTIFACT_PREFIX"]["value"] == "s3://mlops/models/breast-cancer/bc-v7/"
    assert env["MLOPS_FEATURESET_URI"]["value"] == "s3://mlops/features/f/v1/"
    assert env["HOME"]["value"] == "/tmp"


def test_given_input_when_built_then_deadline_retries_and_fail_fast_exit_codes():
    spec = build_training_job(_input(active_deadline_seconds=600, backoff_limit=2))["spec"]
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["backoffLimit"] == 2
    assert "ttlSecondsAfterFinished" not in spec
    fail_job, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"] == {"containerName": "train", "operator": "In", "values": [2, 4]}
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_given_resources_when_built_then_copied_to_container_else_absent():
    resources = {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    assert _container(build_training_job(_input(resources=resources)))["resources"] == resources
    assert "resources" not in _container(build_training_job(_input()))


def test_given_same_input_when_built_twice_then_identical_manifests():
    assert build_training_job(_input()) == build_training_job(_input())


def test_given_long_model_name_when_labelled_then_label_values_valid():
    labels = model_labels("m" * 70, "v" * 100)
    assert all(len(v) <= 63 for v in labels.values())
