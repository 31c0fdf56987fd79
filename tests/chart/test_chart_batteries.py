"""The chart's batteries (`batteries.enabled`): an in-cluster MinIO, Prometheus and Alertmanager wired to the
operator, every pod Pod Security "restricted" with a read-only root, least-privilege discovery RBAC, and
PVCs or emptyDirs as the values ask."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from test_chart import CHART, NAMESPACE, RELEASE, assert_restricted, env_of, helm_template, of_kind, one, render

pytestmark = pytest.mark.chart

ON = ("batteries.enabled=true", "batteries.namespaces={team-a,team-b}")
PARTS = ("minio", "prometheus", "alertmanager")


def named(docs: list[dict[str, Any]], kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name
             and d["metadata"].get("namespace", namespace) == namespace]
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, got {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]], part: str) -> dict[str, Any]:
    return named(docs, "Deployment", f"{RELEASE}-{part}")["spec"]["template"]["spec"]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_given_default_values_when_rendered_then_no_battery_is_there():
    names = {d["metadata"]["name"] for d in render()}
    assert not names & {f"{RELEASE}-{part}" for part in PARTS}
    operator = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "MLOPS_PROMETHEUS_URL" not in env_of(operator)


@pytest.mark.parametrize("extra", [(), ("batteries.persistence=true",), ("batteries.namespaces=null",)])
def test_given_batteries_when_rendered_then_every_pod_is_restricted_with_a_read_only_root(extra):
    docs = render(*ON, *extra)
    deployments = of_kind(docs, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        [RELEASE] + [f"{RELEASE}-{part}" for part in PARTS])
    for deployment in deployments:
        assert_restricted(deployment["spec"]["template"]["spec"])


def test_given_batteries_when_rendered_then_the_operator_and_each_workload_namespace_get_the_minio_credentials():
    docs = render(*ON)
    root = secret_data(named(docs, "Secret", f"{RELEASE}-minio"))
    operator_s3 = secret_data(named(docs, "Secret", f"{RELEASE}-s3"))
    assert operator_s3["S3_ENDPOINT_URL"] == f"http://{RELEASE}-minio.{NAMESPACE}.svc:9000"
    assert operator_s3["S3_BUCKET"] == "mlops"
    assert (operator_s3["AWS_ACCESS_KEY_ID"], operator_s3["AWS_SECRET_ACCESS_KEY"]) == (
        root["MINIO_ROOT_USER"], root["MINIO_ROOT_PASSWORD"])
    assert len(root["MINIO_ROOT_PASSWORD"]) >= 8
    for namespace in ("team-a", "team-b"):
        assert secret_data(named(docs, "Secret", "mlops-s3", namespace)) == operator_s3
    operator = one([d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == RELEASE], "Deployment")
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == f"{RELEASE}-s3"
    assert env["MLOPS_PROMETHEUS_URL"]["value"] == f"http://{RELEASE}-prometheus.{NAMESPACE}.svc:9090"
    minio_env = env_of(pod_spec(docs, "minio")["containers"][0])
    assert minio_env["MINIO_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-minio", "key": "MINIO_ROOT_PASSWORD"}
    assert minio_env["MINIO_BUCKET"]["value"] == "mlops"


def test_given_an_existing_s3_secret_when_batteries_render_then_the_users_operator_secret_is_left_alone():
    docs = render(*ON, "s3.existingSecret=my-s3")
    assert not [d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == f"{RELEASE}-s3"]


def test_given_batteries_when_rendered_then_prometheus_scrapes_discovered_pods_with_the_shipped_rules():
    docs = render(*ON)
    config_map = named(docs, "ConfigMap", f"{RELEASE}-prometheus")
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules.yaml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"{RELEASE}-alertmanager:9093"]
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["/sd/pods.json"]
    groups = {g["name"] for g in yaml.safe_load(config_map["data"]["rules.yaml"])["groups"]}
    shipped = yaml.safe_load((CHART / "files" / "rules.yaml").read_text())
    assert groups == {g["name"] for g in shipped["groups"]}
    spec = pod_spec(docs, "prometheus")
    sidecar = {c["name"]: c for c in spec["containers"]}["discovery"]
    assert sidecar["command"] == ["mlops-pod-discovery"]
    assert env_of(sidecar)["MLOPS_DISCOVERY_NAMESPACES"]["value"] == "team-a,team-b"
    # Only the sidecar holds the API token; Prometheus and the pod itself get none.
    assert spec["automountServiceAccountToken"] is False
    token_mounts = {c["name"] for c in spec["containers"]
                    for m in c["volumeMounts"] if m["name"] == "token"}
    assert token_mounts == {"discovery"}


def test_given_workload_namespaces_when_rendered_then_discovery_may_only_list_pods_there():
    docs = render(*ON)
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == f"{RELEASE}-prometheus"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == f"{RELEASE}-prometheus"]
    assert {(b["metadata"]["namespace"], b["subjects"][0]["name"], b["subjects"][0]["namespace"])
            for b in bindings} == {("team-a", f"{RELEASE}-prometheus", NAMESPACE),
                                   ("team-b", f"{RELEASE}-prometheus", NAMESPACE)}
    assert not [r for r in of_kind(docs, "ClusterRole") if "prometheus" in r["metadata"]["name"]]


def test_given_no_workload_namespaces_when_rendered_then_discovery_lists_pods_cluster_wide_and_nothing_else():
    docs = render("batteries.enabled=true")
    role = named(docs, "ClusterRole", f"{RELEASE}-prometheus-{NAMESPACE}")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "mlops-s3"]


@pytest.mark.parametrize(("sets", "key", "path"), [
    ((), "token", "/etc/alertmanager/token/token"),
    (("alerts.existingSecret=my-token", "alerts.existingSecretKey=t"), "t", "/etc/alertmanager/token/t"),
])
def test_given_batteries_when_rendered_then_alertmanager_posts_to_the_operator_with_the_token_file(sets, key, path):
    docs = render(*ON, *sets)
    config = yaml.safe_load(named(docs, "ConfigMap", f"{RELEASE}-alertmanager")["data"]["alertmanager.yml"])
    receiver = config["receivers"][0]["webhook_configs"][0]
    assert config["route"]["receiver"] == config["receivers"][0]["name"]
    assert receiver["url"] == f"http://{RELEASE}.{NAMESPACE}.svc:8081/alerts"
    assert receiver["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": path}
    volumes = {v["name"]: v for v in pod_spec(docs, "alertmanager")["volumes"]}
    secret = volumes["token"]["secret"]
    assert secret["items"] == [{"key": key, "path": key}]
    assert secret["secretName"] == (sets[0].split("=")[1] if sets else f"{RELEASE}-alert-token")


def test_given_batteries_when_rendered_then_the_operator_network_policy_admits_the_in_cluster_alertmanager():
    docs = render(*ON)
    ingress = named(docs, "NetworkPolicy", f"{RELEASE}-ingress")["spec"]["ingress"]
    alertmanager_labels = named(docs, "Deployment", f"{RELEASE}-alertmanager")["spec"]["selector"]["matchLabels"]
    peers = [peer for rule in ingress for peer in rule.get("from", [])]
    assert {"podSelector": {"matchLabels": alertmanager_labels}} in peers
    operator_selector = named(docs, "Deployment", RELEASE)["spec"]["selector"]["matchLabels"]
    for part in PARTS:  # no battery pod is ever selected as an operator pod
        labels = named(docs, "Deployment", f"{RELEASE}-{part}")["spec"]["template"]["metadata"]["labels"]
        assert not operator_selector.items() <= labels.items(), part


@pytest.mark.parametrize(("persistence", "claims"), [("true", True), ("false", False), ("auto", False)])
def test_given_a_persistence_mode_when_rendered_offline_then_data_is_on_pvcs_or_empty_dirs(persistence, claims):
    """`auto` asks the cluster for a default StorageClass (lookup), which an offline render cannot see."""
    docs = render(*ON, f"batteries.persistence={persistence}")
    pvcs = {p["metadata"]["name"] for p in of_kind(docs, "PersistentVolumeClaim")}
    assert pvcs == ({f"{RELEASE}-{part}" for part in PARTS} if claims else set())
    for part in PARTS:
        data = {v["name"]: v for v in pod_spec(docs, part)["volumes"]}["data"]
        if claims:
            assert data["persistentVolumeClaim"] == {"claimName": f"{RELEASE}-{part}"}
        else:
            assert "sizeLimit" in data["emptyDir"]


@pytest.mark.parametrize(("value", "complaint"), [
    ("batteries.persistence=sometimes", "/batteries/persistence"),
    ("batteries.minio.bucket=A_B", "/batteries/minio/bucket"),
    ("batteries.prometheus.scrapeInterval=5", "/batteries/prometheus/scrapeInterval"),
    ("batteries.namespaces={Bad_Name}", "/batteries/namespaces"),
])
def test_given_a_bad_batteries_value_when_rendered_then_the_schema_names_it(value, complaint):
    result = helm_template(*ON, value, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_given_rules_for_when_rendered_then_every_shipped_rule_waits_that_long_and_nothing_else_changes():
    def rules(*sets: str) -> list[dict[str, Any]]:
        config_map = named(render(*ON, *sets), "ConfigMap", f"{RELEASE}-prometheus")
        return [rule for group in yaml.safe_load(config_map["data"]["rules.yaml"])["groups"] for rule in group["rules"]]

    shipped, compressed = rules(), rules("batteries.prometheus.rulesFor=30s")
    assert {r.get("alert"): r.get("for") for r in shipped}["MLOpsFeatureDriftHigh"] == "5m"
    assert all(r["for"] == "30s" for r in compressed if "for" in r)
    assert [{k: v for k, v in r.items() if k != "for"} for r in compressed] == [
        {k: v for k, v in r.items() if k != "for"} for r in shipped]


def test_given_an_existing_minio_secret_when_rendered_then_no_credentials_are_rendered_and_minio_reads_that_secret():
    docs = render(*ON, "batteries.minio.existingSecret=my-minio", "s3.existingSecret=my-s3")
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == [f"{RELEASE}-alert-token"]
    minio_env = env_of(pod_spec(docs, "minio")["containers"][0])
    assert minio_env["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"]["name"] == "my-minio"
    refused = helm_template(*ON, "batteries.minio.existingSecret=my-minio", check=False)
    assert refused.returncode != 0 and "needs s3.existingSecret" in refused.stderr
