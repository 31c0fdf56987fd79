"""Least privilege in every rendering mode: Pod Security "restricted" with a read-only root filesystem, RBAC
with exactly the verbs used (no wildcards, Secrets readable by name only), NetworkPolicies that open only
what the operator serves and calls."""

from __future__ import annotations

from typing import Any

import pytest
from test_chart import MODES, NAMESPACE, assert_restricted, env_of, of_kind, one, rbac_rules, render

pytestmark = pytest.mark.chart


# --- security ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_given_any_mode_when_rendered_then_every_container_is_restricted_with_read_only_root(mode):
    docs = render(*MODES[mode])
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")]
    assert workloads
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"] if workload["kind"] != "Pod" else workload["spec"]
        assert_restricted(spec)


@pytest.mark.parametrize("mode", MODES)
def test_given_any_mode_when_rendered_then_rbac_has_no_wildcard(mode):
    rules = rbac_rules(render(*MODES[mode]))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in item for item in rule.get(field, [])), rule
        assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("mode", MODES)
def test_given_any_mode_when_rendered_then_secrets_are_only_readable_by_name(mode):
    """`get` lets the operator check the S3 Secret exists, `create` makes each router's token Secret;
    list/watch would expose every Secret."""
    rules = [r for r in rbac_rules(render(*MODES[mode])) if "" in r["apiGroups"] and "secrets" in r["resources"]]
    assert rules
    assert {verb for rule in rules for verb in rule["verbs"]} == {"get", "create"}


def test_given_cluster_mode_when_rendered_then_cluster_role_is_bound_to_the_service_account():
    docs = render()
    role, binding = one(docs, "ClusterRole"), one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    # The only namespaced grant is leader election's, in the release namespace (test_chart_rbac pins it).
    assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(docs, "Role")] == [
        (NAMESPACE, "mlops-operator-leader-election")]
    assert [b["metadata"]["name"] for b in of_kind(docs, "RoleBinding")] == ["mlops-operator-leader-election"]


def test_given_namespaced_rbac_when_rendered_then_each_namespace_gets_the_cluster_modes_rules_as_a_role():
    cluster_wide = one(render(), "ClusterRole")["rules"]
    docs = render(*MODES["namespaced-rbac"])
    election = "mlops-operator-leader-election"
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] != election]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding")
                  if b["metadata"]["name"] != election) == ["team-a", "team-b"]
    discovery = one(docs, "ClusterRole")["rules"]
    assert discovery == [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                          "verbs": ["list", "watch"]}]
    for role in roles:
        assert discovery + role["rules"] == cluster_wide
    env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["MLOPS_NAMESPACES"]["value"] == "team-a,team-b"


@pytest.mark.parametrize(("flag", "group", "resource"), [
    ("rbac.gatewayAPI", "gateway.networking.k8s.io", "httproutes"),
    ("rbac.kserve", "serving.kserve.io", "inferenceservices"),
])
def test_given_an_optional_provider_when_its_flag_toggles_then_its_rule_follows(flag, group, resource):
    def granted(*sets: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] for r in rbac_rules(render(*sets)))

    assert not granted()
    assert granted(f"{flag}=true")


def test_given_the_operator_rules_when_rendered_then_each_kind_gets_exactly_the_verbs_it_needs():
    """A summary per kind; tests/unit/test_chart_rbac.py pins the whole rule set in every mode."""
    def verbs(group: str, resource: str) -> set[str]:
        return {v for r in rbac_rules(render()) if group in r["apiGroups"] and resource in r["resources"]
                for v in r["verbs"]}

    assert verbs("mlops.dev", "modelversions") == {"get", "list", "watch", "patch", "create"}
    assert verbs("mlops.dev", "retrainpolicies") == {"get", "list", "watch", "patch"}
    assert verbs("mlops.dev", "retrainpolicies/status") == verbs("mlops.dev", "modelversions/status") == {"patch"}
    assert verbs("mlops.dev", "modelversions/finalizers") == {"update"}
    assert verbs("mlops.dev", "retrainpolicies/finalizers") == set()  # owns nothing
    assert verbs("apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    assert verbs("", "namespaces") == set()  # all namespaces: no namespace observation
    assert verbs("", "events") == {"create"} and verbs("events.k8s.io", "events") == set()
    assert verbs("batch", "jobs") == {"get", "create"}
    # list: by label (Job pods, routers); patch: leader election's own-pod label, in the release namespace only.
    assert verbs("", "pods") == {"list", "patch"} and verbs("", "pods/log") == set()
    assert verbs("coordination.k8s.io", "leases") == {"create", "get", "update"}
    assert verbs("apps", "deployments") == {"get", "list", "create", "patch", "delete"}
    assert verbs("", "services") == {"get", "create", "patch", "delete"}
    assert verbs("", "configmaps") == {"get", "create", "patch"}


# --- NetworkPolicies ---------------------------------------------------------------------------------------------


def _policies(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    by_type = {tuple(p["spec"]["policyTypes"]): p for p in of_kind(docs, "NetworkPolicy")}
    return by_type[("Ingress",)], by_type[("Egress",)]


def test_given_defaults_when_rendered_then_http_is_reachable_only_from_the_monitoring_namespace():
    docs = render()
    ingress, _ = _policies(docs)
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert ingress["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    rules = {rule["ports"][0]["port"]: rule for rule in ingress["spec"]["ingress"]}
    assert set(rules) == {"http", "health"}
    assert rules["http"]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert "from" not in rules["health"]


def test_given_defaults_when_rendered_then_egress_allows_dns_apiserver_s3_prometheus_and_workloads_only():
    _, egress = _policies(render())
    ports = [{(p["port"], p["protocol"]) for p in rule["ports"]} for rule in egress["spec"]["egress"]]
    assert ports == [{(53, "UDP"), (53, "TCP")}, {(443, "TCP"), (6443, "TCP")}, {(443, "TCP"), (9000, "TCP")},
                     {(9090, "TCP")}, {(8080, "TCP")}]


def test_given_custom_cidrs_when_rendered_then_egress_targets_exactly_them():
    _, egress = _policies(render("networkPolicy.egress.s3.cidrs={10.1.2.3/32}", "networkPolicy.egress.s3.ports={9000}",
                                 "networkPolicy.egress.workloads.enabled=false",
                                 set_json=["networkPolicy.egress.prometheus.ports=[]"]))
    rules = egress["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 9000, "protocol": "TCP"}]} in rules
    assert not any(p["port"] in (8080, 9090) for rule in rules for p in rule["ports"])


def test_given_network_policy_disabled_when_rendered_then_none_renders():
    assert not of_kind(render("networkPolicy.enabled=false"), "NetworkPolicy")
