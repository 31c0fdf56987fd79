"""Least privilege in what the operator builds: model servers read S3 with the serving Secret (read-only
credentials when configured) while training and materialize Jobs keep the read-write one; finished Jobs get
a TTL only when one is configured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.builders.job import TrainingJobInput, build_runtime_job, build_training_job
from mlops_operator.builders.materialize import MaterializeJobInput, build_materialize_job
from mlops_operator.handlers import rollout
from mlops_operator.handlers.modeldeployment import rollout_providers
from mlops_operator.handlers.observe import job_settings
from mlops_operator.logic.rollout.state import Observations, Plan, VersionInfo, WorkloadPlan
from mlops_operator.operator_settings import OperatorSettings
from mlops_operator.providers.traffic import deployments

pytestmark = pytest.mark.unit

RW, RO = "mlops-s3", "mlops-s3-readonly"
MD = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
      "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-md", "generation": 1},
      "spec": {"model": "breast-cancer", "version": "bc-v1"}}
MV_OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": "bc-v1", "namespace": "team-a", "uid": "uid-mv"}}
FS_OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet",
            "metadata": {"name": "bc-features", "namespace": "team-a", "uid": "uid-fs"}}


def secret_refs(obj: dict[str, Any]) -> set[str]:
    """Every Secret a pod template's containers read through secretKeyRef."""
    spec = obj["spec"]["template"]["spec"]
    return {e["valueFrom"]["secretKeyRef"]["name"] for c in spec["containers"] for e in c.get("env", [])
            if "secretKeyRef" in (e.get("valueFrom") or {})}


def served_objects(settings: OperatorSettings, monkeypatch) -> list[dict[str, Any]]:
    """What the ModelDeployment handler applies for one version, with the providers built from ``settings``."""
    applied: list[dict[str, Any]] = []

    async def capture(obj: dict[str, Any]) -> dict[str, Any]:
        applied.append(obj)
        return obj

    monkeypatch.setattr(deployments, "apply_object", capture)
    md = ModelDeployment.from_body(MD)
    info = VersionInfo("bc-v1", "breast-cancer", "Ready", "s3://mlops/models/breast-cancer/bc-v1/", "ab" * 32)
    obs = Observations(namespace="team-a", name="bc", versions={"bc-v1": info}, workloads={})
    plan = Plan(status={}, workloads=(WorkloadPlan("bc-v1", "stable", 1),))
    ctx = rollout.serving_context(MD, md, obs.versions, rollout_providers(settings))
    asyncio.run(deployments.apply_workloads(ctx, plan, obs))
    return applied


def jobs(settings: OperatorSettings) -> list[dict[str, Any]]:
    """A training and a materialize Job from the JobSettings the handlers build from ``settings``."""
    cfg = job_settings(settings)
    training = build_training_job(TrainingJobInput(
        owner=MV_OWNER, model="breast-cancer", training={"dataset": {"builtin": "breast_cancer"}},
        artifact_prefix="s3://mlops/models/breast-cancer/bc-v1/", image=cfg.image, s3_secret=cfg.s3_secret,
        active_deadline_seconds=600, ttl_seconds_after_finished=cfg.ttl_seconds_after_finished))
    materialize = build_materialize_job(MaterializeJobInput(
        owner=FS_OWNER, spec={}, version="v1", prefix="s3://mlops/features/bc-features/v1/", image=cfg.image,
        s3_secret=cfg.s3_secret))
    return [training, materialize]


# --- the read-only serving Secret ---------------------------------------------------------------------------


def test_given_a_serving_secret_when_a_version_is_served_then_model_servers_read_only_the_read_only_secret(monkeypatch):
    settings = OperatorSettings(s3_secret=RW, serving_s3_secret=RO)
    deployments = [o for o in served_objects(settings, monkeypatch) if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    assert secret_refs(deployments[0]) == {RO}


def test_given_a_serving_secret_when_jobs_are_built_then_training_and_materialize_keep_the_read_write_secret():
    settings = OperatorSettings(s3_secret=RW, serving_s3_secret=RO)
    assert job_settings(settings).s3_secret == RW
    for job in jobs(settings):
        assert secret_refs(job) == {RW}


def test_given_no_serving_secret_when_a_version_is_served_then_it_uses_the_workload_secret(monkeypatch):
    settings = OperatorSettings(s3_secret="team-s3")
    (deployment,) = [o for o in served_objects(settings, monkeypatch) if o["kind"] == "Deployment"]
    assert secret_refs(deployment) == {"team-s3"}
    assert OperatorSettings(s3_secret="team-s3", serving_s3_secret="  ").serving_secret == "team-s3"


def test_given_the_environment_when_settings_load_then_the_serving_secret_and_job_ttl_are_read(monkeypatch):
    monkeypatch.setenv("MLOPS_S3_SECRET", RW)
    monkeypatch.setenv("MLOPS_SERVING_S3_SECRET", RO)
    monkeypatch.setenv("MLOPS_JOB_TTL_SECONDS_AFTER_FINISHED", "86400")
    s = OperatorSettings()
    assert (s.s3_secret, s.serving_secret, s.job_ttl_seconds_after_finished) == (RW, RO, 86400)


# --- finished-Job TTL ---------------------------------------------------------------------------------------


def test_given_no_ttl_when_jobs_are_built_then_finished_jobs_stay():
    settings = OperatorSettings()
    assert job_settings(settings).ttl_seconds_after_finished is None
    for job in jobs(settings):
        assert "ttlSecondsAfterFinished" not in job["spec"]


def test_given_a_ttl_when_the_training_job_is_built_then_it_carries_it():
    training, _ = jobs(OperatorSettings(job_ttl_seconds_after_finished=3600))
    assert training["spec"]["ttlSecondsAfterFinished"] == 3600


@pytest.mark.parametrize("ttl", [None, 60, 604800])
def test_given_a_ttl_or_none_when_a_runtime_job_is_built_then_the_field_is_set_only_when_given(ttl):
    job = build_runtime_job(name="j", owner=FS_OWNER, labels={"a": "b"}, container_name="c", command=["x"], env=[],
                            image="i", image_pull_policy="Never", backoff_limit=1, active_deadline_seconds=60,
                            resources={}, tmp_size_limit="1Gi", ttl_seconds_after_finished=ttl)
    assert job["spec"].get("ttlSecondsAfterFinished") == ttl
    assert ("ttlSecondsAfterFinished" in job["spec"]) == (ttl is not None)


@pytest.mark.parametrize("ttl", [0, 59, -1])
def test_given_a_ttl_under_a_minute_when_settings_load_then_it_is_refused(ttl):
    """The operator must see a finished Job before it goes, or it would create it again."""
    with pytest.raises(ValidationError):
        OperatorSettings(job_ttl_seconds_after_finished=ttl)
