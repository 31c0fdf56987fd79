"""Kustomize and Helm install the same operator: manifests/base is rendered from the chart and stays current,
and the overlays change only what they promise (images, pull policy, endpoint, resources)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from test_chart import (
    NAMESPACE, REPO_ROOT, assert_restricted, env_of, helm_bin, helm_template, kubectl_bin, load_docs, of_kind, one,
    run,
)

pytestmark = pytest.mark.chart

MANIFESTS = REPO_ROOT / "manifests"
# The values manifests/base/render.sh renders with: Secrets referenced, never created in git.
BASE_SETS = ("s3.existingSecret=mlops-operator-s3", "alerts.existingSecret=mlops-operator-alert-token")


def kustomize(path: str) -> list[dict[str, Any]]:
    return load_docs(run(kubectl_bin(), "kustomize", str(MANIFESTS / path)).stdout)


def names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in docs}


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_given_the_chart_when_base_is_rendered_again_then_operator_yaml_is_current():
    result = run(str(MANIFESTS / "base" / "render.sh"), env={**os.environ, "HELM": helm_bin()})
    assert result.stdout == (MANIFESTS / "base" / "operator.yaml").read_text(), (
        "manifests/base/operator.yaml is stale: run manifests/base/render.sh > manifests/base/operator.yaml")


def test_given_base_and_chart_when_built_then_they_hold_the_same_kinds_and_names_plus_the_namespace():
    base = kustomize("base")
    chart = load_docs(helm_template(*BASE_SETS, include_crds=True).stdout)
    assert names(base) == names(chart) | {("Namespace", NAMESPACE)}
    assert of_kind(base, "CustomResourceDefinition"), "no CRDs: crds/ must be generated (mlops_operator.api.crdgen)"
    scoped = [d for d in base if d["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole",
                                                   "ClusterRoleBinding"}]
    assert {d["metadata"]["namespace"] for d in scoped} == {NAMESPACE}


def test_given_base_when_built_then_its_namespace_enforces_restricted_pod_security():
    namespace = one(kustomize("base"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", ["base", "overlays/local", "overlays/production"])
def test_given_any_overlay_when_built_then_the_operator_stays_restricted_and_leader_elected(overlay):
    docs = kustomize(overlay)
    deployment = one(docs, "Deployment")
    assert_restricted(deployment["spec"]["template"]["spec"])
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env_of(operator_container(docs))["MLOPS_LEADER_ELECTION"]["value"] == "true"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(docs, "Service")["spec"]["selector"]["mlops.dev/leader"] == "true"
    assert [r["metadata"]["name"] for r in of_kind(docs, "Role")] == ["mlops-operator-leader-election"]
    assert not of_kind(docs, "Secret"), "credentials never live in git"


def test_given_the_local_overlay_when_built_then_images_are_local_never_pulled_and_s3_is_the_local_minio():
    docs = kustomize("overlays/local")
    container = operator_container(docs)
    assert container["image"] == "localhost/mlops-operator:dev"
    assert container["imagePullPolicy"] == "Never"
    env = env_of(container)
    assert env["MLOPS_IMAGE_PULL_POLICY"] == {"name": "MLOPS_IMAGE_PULL_POLICY", "value": "Never"}
    assert env["S3_ENDPOINT_URL"] == {"name": "S3_ENDPOINT_URL", "value": "http://10.213.0.1:9000"}
    assert "valueFrom" in env["AWS_SECRET_ACCESS_KEY"]
    ingress = next(p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["policyTypes"] == ["Ingress"])
    assert {"ipBlock": {"cidr": "10.213.0.1/32"}} in ingress["spec"]["ingress"][0]["from"]


def test_given_the_production_overlay_when_built_then_images_are_pinned_and_resources_explicit():
    container = operator_container(kustomize("overlays/production"))
    repository, tag = container["image"].rsplit(":", 1)
    assert not repository.startswith("localhost/")
    assert tag not in {"dev", "latest"}
    runtime = env_of(container)["MLOPS_RUNTIME_IMAGE"]["value"]
    assert runtime.rsplit(":", 1)[1] == tag, "operator and runtime images come from the same release"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}


BATTERIES_SETS = (*BASE_SETS, "batteries.enabled=true", "batteries.minio.existingSecret=mlops-operator-minio")


def test_given_the_chart_when_the_batteries_overlay_is_rendered_again_then_batteries_yaml_is_current():
    overlay = MANIFESTS / "overlays" / "batteries"
    result = run(str(overlay / "render.sh"), env={**os.environ, "HELM": helm_bin()})
    assert result.stdout == (overlay / "batteries.yaml").read_text(), (
        "manifests/overlays/batteries/batteries.yaml is stale: run manifests/overlays/batteries/render.sh > "
        "manifests/overlays/batteries/batteries.yaml")


def test_given_the_batteries_overlay_when_built_then_it_is_the_charts_batteries_install_with_no_secret_in_git():
    docs = kustomize("overlays/batteries")
    chart = load_docs(helm_template(*BATTERIES_SETS, include_crds=True).stdout)
    assert names(docs) == names(chart) | {("Namespace", NAMESPACE)}
    assert not of_kind(docs, "Secret"), "credentials never live in git"
    for deployment in of_kind(docs, "Deployment"):
        assert_restricted(deployment["spec"]["template"]["spec"])
    chart_operator = next(d for d in of_kind(chart, "Deployment") if d["metadata"]["name"] == "mlops-operator")
    overlay_operator = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "mlops-operator")
    assert env_of(overlay_operator["spec"]["template"]["spec"]["containers"][0])["MLOPS_PROMETHEUS_URL"] == env_of(
        chart_operator["spec"]["template"]["spec"]["containers"][0])["MLOPS_PROMETHEUS_URL"]
    ingress = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}["mlops-operator-ingress"]
    chart_ingress = {p["metadata"]["name"]: p for p in of_kind(chart, "NetworkPolicy")}["mlops-operator-ingress"]
    assert ingress["spec"]["ingress"][0]["from"] == chart_ingress["spec"]["ingress"][0]["from"]
