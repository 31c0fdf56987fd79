"""The operator in-process (KopfRunner) over two namespaces: a ModelDeployment reads its ModelVersions from the
operator's index (fed by the watch, no list call per pass), still follows a version that turns Ready after it
started, and equal model and version names in two namespaces stay apart.

Nothing needs to run: a ResourceQuota of zero pods in both namespaces keeps the serving pods from being
scheduled; what is checked is the decision (``status.desiredVersion``) and the serving Deployment it applies.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner

from mlops_operator.builders.serving import version_name
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers.storage import sha256_hex
from test_operator_modelversion import MODEL_BYTES, registered, s3_secret  # noqa: F401  (shared fixtures)
from test_operator_references import (  # noqa: F401  (shared fixtures and helpers)
    KINDS,
    OPERATOR_ENV,
    apply,
    crds,
    get,
    model_version,
    reconciles,
    wait_condition,
    wait_for,
)
from tests.conftest import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NO_PODS = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}


@pytest.fixture()
def other_namespace(kube_env) -> Iterator[str]:
    name = f"t-mdindex-b-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture()
def two_namespaces(crds, namespace, other_namespace, s3_env, monkeypatch) -> Iterator[tuple[str, str]]:
    """Both namespaces with the S3 Secret and no room for pods; our objects deleted while an operator runs."""
    values = {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET")}
    for ns in (namespace, other_namespace):
        s3_secret(ns, values)
        apply(ns, NO_PODS)
    for key, value in OPERATOR_ENV.items():
        monkeypatch.setenv(key, value)
    operator_settings.cache_clear()
    yield namespace, other_namespace
    with operator_over(namespace, other_namespace):  # release our finalizers so the namespaces can go
        for ns in (namespace, other_namespace):
            kubectl("-n", ns, "delete", ",".join(KINDS), "--all", "--wait=true", "--timeout=90s", check=False)
    operator_settings.cache_clear()


@contextlib.contextmanager
def operator_over(*namespaces: str) -> Iterator[KopfRunner]:
    args = ["run", "-m", "mlops_operator.main", "--standalone", *(a for ns in namespaces for a in ("--namespace", ns))]
    with KopfRunner(args, timeout=60) as runner:
        yield runner


def tracking_deployment() -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
            "spec": {"model": "breast-cancer", "track": {"policy": "latestReady"}, "serving": {"replicas": 1}}}


def md_status(namespace: str) -> dict[str, Any]:
    return (get(namespace, "modeldeployment", "bc") or {}).get("status") or {}


def serving_deployments(namespace: str) -> list[str]:
    items = json.loads(kubectl("-n", namespace, "get", "deployments", "-o", "json").stdout)["items"]
    return sorted(d["metadata"]["name"] for d in items)


def test_given_deployments_of_one_model_in_two_namespaces_when_a_version_turns_ready_in_one_then_only_it_follows(
        two_namespaces, registered):
    ns_a, ns_b = two_namespaces
    for ns in two_namespaces:
        apply(ns, tracking_deployment())
    with operator_over(ns_a, ns_b) as runner:
        for ns in two_namespaces:  # both deployments reconciled with no version at all
            wait_for(f"{ns}: first pass", lambda ns=ns: md_status(ns).get("phase"))
        assert "desiredVersion" not in md_status(ns_a) and "desiredVersion" not in md_status(ns_b)

        # created after the operator started: only the watch (the index) can tell the pass about them
        apply(ns_a, model_version("bc-v1", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)}))
        apply(ns_b, model_version("bc-v1", artifact={"uri": registered, "sha256": "f" * 64}))
        wait_condition(ns_a, "modelversion", "bc-v1", "Ready", "True", "GatesPassed")
        wait_for(f"{ns_b}: bc-v1 Rejected", lambda: (get(ns_b, "modelversion", "bc-v1") or {})
                 .get("status", {}).get("phase") == "Rejected")

        wait_for(f"{ns_a}: the deployment follows the newly Ready bc-v1",
                 lambda: md_status(ns_a).get("desiredVersion") == "bc-v1")
        wait_for(f"{ns_a}: serving Deployment of bc-v1",
                 lambda: version_name("bc", "bc-v1") in serving_deployments(ns_a))

        before = reconciles("ModelDeployment")
        wait_for("more passes of both deployments", lambda: reconciles("ModelDeployment") - before >= 4)
        status_b = md_status(ns_b)
        assert "desiredVersion" not in status_b, status_b  # the Ready bc-v1 of the other namespace is not seen
        assert not [n for n in serving_deployments(ns_b) if n.startswith("mdep-")]
    assert runner.exception is None
