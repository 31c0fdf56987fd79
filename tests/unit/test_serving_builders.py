"""Serving manifests: deterministic names, restricted pods, S3 by reference, selectors that match, router config."""

from __future__ import annotations

import json
import re

import pytest

from mlops_operator.builders import serving
from mlops_operator.builders.serving import (
    RouterInput,
    ServingInput,
    build_entry_service,
    build_preview_service,
    build_router_configmap,
    build_router_deployment,
    build_router_secret,
    build_serving_deployment,
    launched_compiled_model,
    build_version_service,
    router_document,
    router_selector,
    version_name,
    version_selector,
)
from mlops_operator.logic.rollout.state import Routes
from mlops_operator.runtime.route_config import parse_config
from tests.pod_security import assert_restricted

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _input(**overrides) -> ServingInput:
    values = dict(owner=OWNER, model="breast-cancer", version="bc-v7", role="candidate", replicas=2,
                  artifact_uri="s3://mlops/models/breast-cancer/bc-v7", artifact_sha256="ab" * 32,
                  image="localhost/mlops-runtime:dev", s3_secret="mlops-s3")
    values.update(overrides)
    return ServingInput(**values)


def _env(deployment: dict) -> dict[str, dict]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def _subset(small: dict, big: dict) -> bool:
    return all(big.get(k) == v for k, v in small.items())


@pytest.mark.parametrize("deployment, version", [
    ("bc", "bc-v7"), ("bc", "v1.2.3"), ("x" * 63, "y" * 200), ("a", "b"),
])
def test_given_any_names_when_naming_a_version_then_a_valid_deterministic_service_name(deployment, version):
    name = version_name(deployment, version)
    assert DNS_1035.match(name) and len(name) <= 63
    assert name == version_name(deployment, version)


def test_given_two_deployments_sharing_a_prefix_when_naming_versions_then_names_differ():
    assert version_name("a", "b-c") != version_name("a-b", "c")
    assert version_name("bc", "router") != serving.router_name("bc")


def test_given_a_version_when_built_then_pods_are_restricted_with_read_only_root_and_tmp():
    deployment = build_serving_deployment(_input())
    pod = deployment["spec"]["template"]["spec"]
    assert_restricted(pod)
    assert pod["automountServiceAccountToken"] is False


def test_given_a_version_when_built_then_s3_credentials_come_only_from_the_secret():
    env = _env(build_serving_deployment(_input()))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "mlops-s3"
        assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key
        assert "value" not in env[key]


def test_given_a_version_when_built_then_the_server_contract_env_is_set():
    env = _env(build_serving_deployment(_input()))
    assert {k: env[k]["value"] for k in ("MLOPS_MODEL", "MLOPS_MODEL_VERSION", "MLOPS_ROLE",
                                         "MLOPS_ARTIFACT_PREFIX", "MLOPS_ARTIFACT_SHA256")} == {
        "MLOPS_MODEL": "breast-cancer", "MLOPS_MODEL_VERSION": "bc-v7", "MLOPS_ROLE": "candidate",
        "MLOPS_ARTIFACT_PREFIX": "s3://mlops/models/breast-cancer/bc-v7/", "MLOPS_ARTIFACT_SHA256": "ab" * 32}


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_given_compiled_model_setting_when_built_then_the_server_gets_it_and_its_cpu_limit_in_whole_cores(setting):
    owner = {**OWNER, "spec": {"model": "breast-cancer", "serving": {"compiledModel": setting}}}
    env = _env(build_serving_deployment(_input(owner=owner)))
    assert env["MLOPS_COMPILED_MODEL"]["value"] == setting
    assert env["MLOPS_CPU_LIMIT"]["valueFrom"] == {
        "resourceFieldRef": {"containerName": "serve", "resource": "limits.cpu", "divisor": "1"}}


def test_given_pods_launched_with_a_setting_when_rebuilt_mid_rollout_then_they_keep_it_and_it_reads_back():
    owner = {**OWNER, "spec": {"model": "breast-cancer", "serving": {"compiledModel": "off"}}}
    kept = build_serving_deployment(_input(owner=owner, pod_compiled_model="auto"))
    assert _env(kept)["MLOPS_COMPILED_MODEL"]["value"] == "auto"
    assert launched_compiled_model(kept) == "auto"
    assert launched_compiled_model(build_serving_deployment(_input(owner=owner))) == "off"
    assert launched_compiled_model({"spec": {"template": {"spec": {"containers": [{"env": []}]}}}}) is None


def test_given_no_compiled_model_setting_when_built_then_auto():
    assert _env(build_serving_deployment(_input()))["MLOPS_COMPILED_MODEL"]["value"] == "auto"


def test_given_a_version_when_built_then_probes_port_labels_and_scrape_annotations_follow_the_contract():
    deployment = build_serving_deployment(_input())
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    for labels in (deployment["metadata"]["labels"], template["metadata"]["labels"]):
        assert _subset({"mlops.dev/model": "breast-cancer", "mlops.dev/modelversion": "bc-v7",
                        "mlops.dev/role": "candidate", "mlops.dev/modeldeployment": "bc"}, labels)
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert deployment["metadata"]["name"] == version_name("bc", "bc-v7")


def test_given_a_promoted_version_when_rebuilt_then_only_the_deployment_label_changes_not_the_pods():
    launched = build_serving_deployment(_input(role="candidate"))
    promoted = build_serving_deployment(_input(role="stable", pod_role="candidate"))
    assert promoted["spec"]["template"] == launched["spec"]["template"]
    assert promoted["metadata"]["labels"]["mlops.dev/role"] == "stable"
    assert "mlops.dev/role" not in promoted["spec"]["selector"]["matchLabels"]


def test_given_no_resources_when_built_then_defaults_apply_and_given_resources_are_kept():
    (container,) = build_serving_deployment(_input())["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == serving.DEFAULT_SERVING_RESOURCES
    custom = {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}
    (container,) = build_serving_deployment(_input(resources=custom))["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == custom


def test_given_services_when_built_then_each_selects_exactly_the_pods_it_names():
    deployment = build_serving_deployment(_input())
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    service = build_version_service(OWNER, "breast-cancer", "bc-v7", "candidate")
    assert service["metadata"]["name"] == deployment["metadata"]["name"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert _subset(service["spec"]["selector"], pods)
    other = build_serving_deployment(_input(version="bc-v8"))["spec"]["template"]["metadata"]["labels"]
    assert not _subset(service["spec"]["selector"], other)
    assert service["spec"]["ports"][0]["port"] == 8080
    preview = build_preview_service(OWNER, "breast-cancer", "bc-v7")
    assert preview["metadata"]["name"] == "mdep-bc-preview" and preview["spec"]["selector"] == version_selector("bc", "bc-v7")


def test_given_the_router_when_built_then_entry_service_selects_it_and_it_reads_the_mounted_config():
    router = build_router_deployment(RouterInput(OWNER, "breast-cancer", "localhost/mlops-runtime:dev", replicas=2))
    entry = build_entry_service(OWNER, "breast-cancer", router_selector("bc"))
    assert entry["metadata"]["name"] == "bc" and entry["spec"]["ports"][0]["port"] == 8080
    assert _subset(entry["spec"]["selector"], router["spec"]["template"]["metadata"]["labels"])
    serving_pods = build_serving_deployment(_input())["spec"]["template"]["metadata"]["labels"]
    assert not _subset(entry["spec"]["selector"], serving_pods)
    pod = router["spec"]["template"]["spec"]
    assert_restricted(pod)
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert env["MLOPS_ROUTER_CONFIG"]["value"] == f"{mount['mountPath']}/config.json"
    assert env["MLOPS_ROUTER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mdep-bc-router", "key": "token"}
    assert not any(k.startswith(("AWS_", "S3_")) for k in env)  # the router never touches S3
    assert container["command"] == ["mlops-route"] and router["spec"]["replicas"] == 2
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "mdep-bc-router"


@pytest.mark.parametrize("routes, weights, shadow_percent", [
    (Routes("v1"), {"stable": 10_000}, None),
    (Routes("v1", "v2", 30), {"stable": 7_000, "candidate": 3_000}, None),
    (Routes("v1", "v2", 0), {"stable": 10_000}, None),
    (Routes("v1", shadow="v3", mirror_percent=25), {"stable": 10_000}, 2_500),
])
def test_given_routes_when_the_router_document_is_built_then_the_real_router_parser_accepts_it(routes, weights, shadow_percent):
    doc = router_document(routes, namespace="team-a", deployment="bc", model="breast-cancer", generation=4)
    config = parse_config(json.loads(json.dumps(doc)))
    assert config.weights == weights and config.generation == 4 and config.model == "breast-cancer"
    assert config.stable.host == f"{version_name('bc', 'v1')}.team-a.svc" and config.stable.port == 8080
    assert (config.shadow_percent if config.shadow else None) == shadow_percent


def test_given_a_document_when_put_into_the_configmap_and_secret_then_keys_match_the_router_deployment():
    doc = router_document(Routes("v1"), namespace="team-a", deployment="bc", model="breast-cancer", generation=1)
    cm = build_router_configmap(OWNER, "breast-cancer", doc)
    assert json.loads(cm["data"]["config.json"]) == doc and cm["metadata"]["name"] == "mdep-bc-router"
    secret = build_router_secret(OWNER, "breast-cancer", "t0k")
    assert secret["stringData"] == {"token": "t0k"} and secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


@pytest.mark.parametrize("obj, expected", [
    (None, frozenset()),
    ({"metadata": {"annotations": {}}}, None),
    ({"metadata": {"annotations": {"mlops.dev/routes": "{not json"}}}, None),
    ({"metadata": {"annotations": {"mlops.dev/routes": serving.routes_annotation(Routes("v1", "v2", 10))}}},
     frozenset({"v1", "v2"})),
    ({"metadata": {"annotations": {"mlops.dev/routes": serving.routes_annotation(Routes("v1", "v2", 0))}}},
     frozenset({"v1"})),
])
def test_given_an_object_when_reading_its_routes_annotation_then_unknown_means_cannot_tell(obj, expected):
    assert serving.annotated_versions(obj) == expected
