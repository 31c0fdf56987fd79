"""The Kubernetes provider against the real apiserver: idempotent outcomes are successes, a stale write
is a Conflict (never a silent overwrite), and errors arrive as the four exception types handlers act on."""

from __future__ import annotations

import asyncio

import pytest

from mlops_operator.providers import kube
from test_operator_references import apply, crds, get, model_version  # noqa: F401  (shared fixtures)

pytestmark = pytest.mark.integration


def _job(namespace: str, name: str) -> dict:
    container = {"name": "c", "image": "localhost/mlops-runtime:dev", "command": ["true"]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}}


def test_given_existing_job_when_created_again_then_existing_returned_not_an_error(kube_env, namespace):
    async def scenario() -> None:
        first, created = await kube.create_job(namespace, _job(namespace, "once"))
        again, created_again = await kube.create_job(namespace, _job(namespace, "once"))
        assert created and not created_again
        assert again["metadata"]["uid"] == first["metadata"]["uid"]
        await kube.delete(kube.job_path(namespace, "once"))
        await kube.delete(kube.job_path(namespace, "once"))  # already gone: success
        assert await kube.get_job(namespace, "never-created") is None
    asyncio.run(scenario())


def test_given_stale_resource_version_when_status_written_then_conflict_and_newer_status_kept(
        crds, namespace):  # noqa: F811
    apply(namespace, model_version("mv-conflict", artifact={"uri": "s3://mlops/x/", "sha256": "0" * 64}))
    obj = get(namespace, "modelversion", "mv-conflict")
    stale = obj["metadata"]["resourceVersion"]

    async def scenario() -> None:
        await kube.patch_status("modelversions", namespace, "mv-conflict", {"phase": "Pending"},
                                resource_version=stale)
        with pytest.raises(kube.Conflict):
            await kube.patch_status("modelversions", namespace, "mv-conflict", {"phase": "Failed"},
                                    resource_version=stale)
    asyncio.run(scenario())
    assert get(namespace, "modelversion", "mv-conflict")["status"]["phase"] == "Pending"


def test_given_invalid_object_when_created_then_invalid_error_names_the_problem(kube_env, namespace):
    bad = _job(namespace, "Not_A_Valid_Name")
    with pytest.raises(kube.Invalid) as err:
        asyncio.run(kube.create_job(namespace, bad))
    assert "Not_A_Valid_Name" in str(err.value)
