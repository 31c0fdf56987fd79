"""The chart's and the kustomize overlays' output is accepted by the real kube-apiserver (server-side dry
run: schema validation, RBAC escalation checks, admission) and meets Pod Security "restricted" without a
single warning."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from tests.chart.test_chart import MIN_KUBE_VERSION
from tests.conftest import REPO_ROOT, kubectl

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "mlops-operator"
CACHE = pathlib.Path(os.environ.get("MLOPS_CACHE_DIR", pathlib.Path.home() / ".cache" / "mlops-operator"))


def _helm() -> str:
    helm = shutil.which("helm") or str(CACHE / "tools" / "bin" / "helm")
    assert pathlib.Path(helm).is_file(), "helm not found: run `make cluster-up`"
    return helm


def _render_chart(namespace: str, *sets: str) -> str:
    argv = [_helm(), "template", "mlops-operator", str(CHART), "--namespace", namespace, "--include-crds",
            "--kube-version", MIN_KUBE_VERSION, "--skip-tests"]
    argv += [arg for value in sets for arg in ("--set", value)]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def _render_kustomize(overlay: str, namespace: str) -> str:
    """The overlay moved into the test namespace (its own Namespace object dropped)."""
    built = kubectl("kustomize", str(REPO_ROOT / "manifests" / overlay)).stdout
    docs = []
    for doc in yaml.safe_load_all(built):
        if not doc or doc["kind"] == "Namespace":
            continue
        if doc["metadata"].get("namespace") == "mlops-system":
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
        docs.append(doc)
    return yaml.safe_dump_all(docs)


def _dry_run(manifests: str, namespace: str) -> subprocess.CompletedProcess:
    # `warn` makes Pod Security report violations of workload templates (Deployments), not only of pods.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted",
            "pod-security.kubernetes.io/warn-version=latest", "--overwrite")
    return kubectl("apply", "--dry-run=server", "-f", "-", input=manifests, check=False)


def _assert_accepted(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    assert "deployment.apps/mlops-operator created (server dry run)" in result.stdout


@pytest.mark.parametrize("sets", [
    (),
    ("rbac.gatewayAPI=true", "rbac.kserve=true", "s3.accessKeyId=AKIDEXAMPLE", "s3.secretAccessKey=x"),
], ids=["defaults", "providers-and-chart-credentials"])
def test_given_the_chart_when_dry_run_on_the_server_then_accepted_and_restricted(kube_env, namespace, sets):
    _assert_accepted(_dry_run(_render_chart(namespace, *sets), namespace))


def test_given_namespaced_rbac_when_dry_run_on_the_server_then_roles_are_accepted(kube_env, namespace):
    result = _dry_run(_render_chart(namespace, "rbac.namespaced=true", f"watchNamespaces={{{namespace}}}"), namespace)
    _assert_accepted(result)
    assert "role.rbac.authorization.k8s.io/mlops-operator created (server dry run)" in result.stdout


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/production"])
def test_given_a_kustomize_overlay_when_dry_run_on_the_server_then_accepted_and_restricted(kube_env, namespace, overlay):
    _assert_accepted(_dry_run(_render_kustomize(overlay, namespace), namespace))
