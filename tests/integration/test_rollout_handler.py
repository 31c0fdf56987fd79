"""The ModelDeployment reconcile pass against the real apiserver: children, admission, status, stages, retry.

Passes are driven here one by one (as the kopf timer would) so each effect can be checked. The model
server pods cannot become Ready in this test (their artifact does not exist), which is exactly the
crash-looping / never-Ready candidate: the progress deadline must give it up, delete its pods, archive
the version, and a retry annotation must start it again exactly once. The builtin router's pods do
become Ready (they need only their ConfigMap), which is what the entry observation is checked against.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from test_operator_references import apply, crds, get  # noqa: F401  (shared fixtures and helpers)

from mlops_operator.builders.serving import router_name, version_name
from mlops_operator.handlers import reconciler
from mlops_operator.handlers.rollout import KIND, PLURAL, RolloutProviders, rollout_reconciler
from mlops_operator.logic.rollout.version_index import dict_lookup
from mlops_operator.logic.status import Event
from mlops_operator.providers import kube
from mlops_operator.providers.traffic.builtin import observe_entry
from tests.conftest import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROVIDERS = RolloutProviders(image="localhost/mlops-runtime:dev", image_pull_policy="IfNotPresent")


def ready_version(namespace: str, name: str) -> None:
    uri = f"s3://mlops/models/breast-cancer/{name}/"
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
                      "spec": {"model": "breast-cancer", "artifact": {"uri": uri, "sha256": "a" * 64}}})
    status = {"status": {"phase": "Ready", "stage": "None", "artifact": {"uri": uri, "sha256": "a" * 64}}}
    kubectl("-n", namespace, "patch", "modelversion", name, "--subresource=status", "--type=merge", "-p",
            json.dumps(status))


async def one_pass(namespace: str, name: str = "bc", later: float = 0.0) -> Any:
    """One reconcile pass through the pass loop production runs, as the timer would run it ``later`` seconds
    from now (the clock is an input); what it posted is in ``.events``."""
    body = await kube.get_custom("modeldeployments", namespace, name)
    now = datetime.now(timezone.utc) + timedelta(seconds=later)
    versions = dict_lookup(await kube.list_custom("modelversions", namespace))  # what the operator's index holds
    step = rollout_reconciler(PROVIDERS, lambda ctx: versions).step
    posted: list[Event] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconciler, "post_events", lambda obj, events: posted.extend(events))
        retry = await reconciler.run_passes(KIND, PLURAL, body, {}, logging.getLogger("test"), step, now=now,
                                            max_passes=1)
    return SimpleNamespace(events=posted, retry=retry)


def status_of(namespace: str) -> dict[str, Any]:
    return (get(namespace, "modeldeployment", "bc") or {}).get("status") or {}


def stage_of(namespace: str, version: str) -> str | None:
    return ((get(namespace, "modelversion", version) or {}).get("status") or {}).get("stage")


async def test_given_a_never_ready_first_version_when_reconciled_then_deadline_archive_and_retry_once(crds, namespace):
    ready_version(namespace, "v1")
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
                      "spec": {"model": "breast-cancer", "version": "v1", "progressDeadline": "8s",
                               "serving": {"replicas": 1}}})
    child = version_name("bc", "v1")

    result = await one_pass(namespace)
    assert [e.reason for e in result.events] == ["RolloutStarted"]
    assert status_of(namespace)["candidateVersion"] == "v1" and status_of(namespace)["phase"] == "Progressing"
    assert get(namespace, "deployment", child) and get(namespace, "service", child)
    assert stage_of(namespace, "v1") == "Staging"

    # restricted Pod Security admitted the pod (it exists), and a repeated pass changes nothing
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "mlops.dev/modelversion=v1", "-o", "json").stdout)
    deadline = time.monotonic() + 30
    while not pods["items"] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "mlops.dev/modelversion=v1", "-o", "json").stdout)
    assert pods["items"], kubectl("-n", namespace, "get", "events", "-o", "wide").stdout
    before = get(namespace, "deployment", child)["metadata"]["resourceVersion"]
    await one_pass(namespace)
    assert get(namespace, "deployment", child)["metadata"]["resourceVersion"] == before

    result = await one_pass(namespace, later=9)  # past the 8 s progress deadline, without waiting for it
    status = status_of(namespace)
    assert status["phase"] == "Failed" and status["abortedVersion"] == "v1" and "candidateVersion" not in status
    assert "progressDeadline" in status["history"][-1]["reason"]
    assert stage_of(namespace, "v1") == "Archived"
    await one_pass(namespace)  # routes observed clean (nothing routed): the pods go
    assert get(namespace, "deployment", child) is None and get(namespace, "service", child) is None

    for _ in range(3):
        await one_pass(namespace)
    assert status_of(namespace)["phase"] == "Failed"  # never retried on its own

    kubectl("-n", namespace, "annotate", "modeldeployment", "bc", "mlops.dev/retry=first")
    await one_pass(namespace)
    await one_pass(namespace)
    status = status_of(namespace)
    assert status["handledRequests"] == {"retry": "first"} and status["candidateVersion"] == "v1"
    for _ in range(4):
        await one_pass(namespace, later=9)
    status = status_of(namespace)
    assert status["phase"] == "Failed" and [h["event"] for h in status["history"]] == ["rolledBack", "rolledBack"]


async def test_given_a_missing_pinned_version_when_reconciled_then_invalid_spec_and_no_children(crds, namespace):
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
                      "spec": {"model": "breast-cancer", "version": "nope"}})
    result = await one_pass(namespace)
    assert [e.reason for e in result.events] == ["ModelVersionNotFound"]
    status = status_of(namespace)
    assert status["phase"] == "Pending"
    assert any(c["type"] == "InvalidSpec" and c["status"] == "True" for c in status["conditions"])
    deployments = json.loads(kubectl("-n", namespace, "get", "deployments", "-o", "json").stdout)["items"]
    assert deployments == []


async def test_given_a_builtin_router_when_its_pod_turns_ready_then_the_entry_observation_follows(crds, namespace):
    ready_version(namespace, "v1")
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
                      "spec": {"model": "breast-cancer", "version": "v1"}})
    router = router_name("bc")
    assert "does not exist" in (await observe_entry(namespace, "bc")).problem()

    # as if v1 had been promoted earlier: this pass applies the router (with v1's routes) and v1's pods
    kubectl("-n", namespace, "patch", "modeldeployment", "bc", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"phase": "Succeeded", "stableVersion": "v1"}}))
    await one_pass(namespace)
    status = status_of(namespace)
    assert status["phase"] == "Degraded" and get(namespace, "deployment", router)
    assert (await observe_entry(namespace, "bc")).replicas == 1

    deadline = time.monotonic() + 90
    while ((get(namespace, "deployment", router) or {}).get("status") or {}).get("readyReplicas", 0) < 1:
        assert time.monotonic() < deadline, kubectl("-n", namespace, "get", "pods,events", "-o", "wide").stdout
        await asyncio.sleep(1)
    entry = await observe_entry(namespace, "bc")
    assert entry.ready_replicas >= 1 and entry.problem() is None
