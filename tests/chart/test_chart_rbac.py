"""The operator's RBAC, pinned rule by rule in every rendering mode: adding a verb (or a resource) must be a
conscious change of this file, next to the reason in charts/mlops-operator/templates/_helpers.tpl.

Why each verb exists (the audit of providers/kube.py, handlers/, providers/traffic/ and kopf 1.x):
- mlops.dev kinds: kopf lists/watches and patches them (finalizer, annotations); passes `get` them after a
  status conflict; status is merge-patched only; ModelVersions are created by RetrainPolicies and searches.
- finalizers `update`: the children's blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
- Jobs: create + get by name. Pods: list by label. Events: create (kopf, core/v1).
- Deployments/Services/ConfigMaps: server-side apply (patch, and create for a new object), plus exactly the
  reads and deletes the rollout handler makes. HorizontalPodAutoscalers/PodDisruptionBudgets: applied and
  deleted (providers/traffic/scaling.py), never read.
- Secrets: get by name and create (router token), never list/watch.
- CRDs list/watch (kopf's resource observer); namespaces list/watch only for kopf's namespace globs.
- Leader election (providers/leader.py), a Role in the release namespace only: the Lease created once and
  then read and renewed by name (update = PUT with resourceVersion), the leader label patched on the own pod.
"""

from __future__ import annotations

import pytest
from test_chart import MODES, of_kind, one, render

pytestmark = pytest.mark.chart

KINDS = ["featuresets", "modelversions", "modeldeployments", "retrainpolicies", "hyperparametersearches",
         "batchpredictions"]


def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


DISCOVERY = [rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list", "watch"])]
NAMESPACE_GLOBS = [rule([""], ["namespaces"], ["list", "watch"])]
NAMESPACED = [
    rule(["mlops.dev"], KINDS, ["get", "list", "watch", "patch"]),
    rule(["mlops.dev"], [f"{k}/status" for k in KINDS], ["patch"]),
    rule(["mlops.dev"], ["featuresets/finalizers", "modelversions/finalizers", "modeldeployments/finalizers",
                         "batchpredictions/finalizers"], ["update"]),
    rule(["mlops.dev"], ["modelversions"], ["create"]),
    rule([""], ["events"], ["create"]),
    rule(["batch"], ["jobs"], ["get", "create"]),
    rule([""], ["pods"], ["list"]),
    rule(["apps"], ["deployments"], ["get", "list", "create", "patch", "delete"]),
    rule(["autoscaling"], ["horizontalpodautoscalers"], ["create", "patch", "delete"]),
    rule(["policy"], ["poddisruptionbudgets"], ["create", "patch", "delete"]),
    rule([""], ["services"], ["get", "create", "patch", "delete"]),
    rule([""], ["configmaps"], ["get", "create", "patch"]),
    rule([""], ["secrets"], ["get", "create"]),
]
GATEWAY = [rule(["gateway.networking.k8s.io"], ["httproutes"], ["get", "create", "patch"])]
KSERVE = [rule(["serving.kserve.io"], ["inferenceservices"], ["get", "create", "patch"])]
LEADER_ELECTION = [
    rule(["coordination.k8s.io"], ["leases"], ["create"]),
    {**rule(["coordination.k8s.io"], ["leases"], ["get", "update"]), "resourceNames": ["mlops-operator"]},
    rule([""], ["pods"], ["patch"]),
]


def cluster_rules(*sets: str) -> list[dict]:
    return one(render(*sets), "ClusterRole")["rules"]


def test_given_defaults_when_rendered_then_the_cluster_role_is_exactly_the_audited_rule_set():
    """Watching all namespaces: one watch per kind cluster-wide, so no namespace list/watch either."""
    assert cluster_rules() == DISCOVERY + NAMESPACED


def test_given_namespace_globs_when_rendered_then_only_namespace_list_watch_is_added():
    assert cluster_rules("watchNamespaces={team-*}") == DISCOVERY + NAMESPACE_GLOBS + NAMESPACED


def test_given_namespaced_rbac_when_rendered_then_cluster_role_is_discovery_and_each_role_the_same_rules():
    docs = render(*MODES["namespaced-rbac"])
    assert one(docs, "ClusterRole")["rules"] == DISCOVERY
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == "mlops-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == NAMESPACED


def test_given_every_optional_provider_when_rendered_then_exactly_their_rules_are_appended():
    assert cluster_rules(*MODES["all-providers"]) == DISCOVERY + NAMESPACE_GLOBS + NAMESPACED + GATEWAY + KSERVE
    assert cluster_rules("rbac.kserve=true") == DISCOVERY + NAMESPACED + KSERVE


@pytest.mark.parametrize("mode", MODES)
def test_given_any_mode_when_rendered_then_the_election_role_is_exactly_its_rules_in_the_release_namespace(mode):
    docs = render(*MODES[mode])
    role = next(r for r in of_kind(docs, "Role") if r["metadata"]["name"] == "mlops-operator-leader-election")
    assert role["metadata"]["namespace"] == "mlops-system" and role["rules"] == LEADER_ELECTION
    binding = next(b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == role["metadata"]["name"])
    assert binding["metadata"]["namespace"] == "mlops-system"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlops-operator", "namespace": "mlops-system"}]
    assert not any(r["apiGroups"] == ["coordination.k8s.io"] for r in rbac_rules_of_cluster(docs)), \
        "leases are never granted cluster-wide"


def test_given_a_lease_name_when_rendered_then_the_role_names_that_lease_and_election_off_grants_nothing():
    role = next(r for r in of_kind(render("leaderElection.leaseName=ops-lock"), "Role"))
    assert role["rules"][1]["resourceNames"] == ["ops-lock"]
    off = render("leaderElection.enabled=false", "replicaCount=1")
    assert not of_kind(off, "Role") and not of_kind(off, "RoleBinding")


def rbac_rules_of_cluster(docs: list[dict]) -> list[dict]:
    return [x for d in of_kind(docs, "ClusterRole") for x in d["rules"]]


@pytest.mark.parametrize("mode", MODES)
def test_given_any_mode_when_rendered_then_no_rule_grants_what_the_code_never_does(mode):
    """The verbs dropped by the least-privilege audit stay dropped, whatever the mode."""
    never = {("", "pods/log"), ("events.k8s.io", "events")}
    docs = render(*MODES[mode])
    for r in [x for d in of_kind(docs, "ClusterRole") + of_kind(docs, "Role") for x in d["rules"]]:
        for group in r["apiGroups"]:
            for resource in r["resources"]:
                assert (group, resource) not in never, r
                assert "update" not in r["verbs"] or resource.endswith("/finalizers") or (
                    (group, resource) == ("coordination.k8s.io", "leases") and r.get("resourceNames")), r
                assert not {"deletecollection", "escalate", "bind", "impersonate"} & set(r["verbs"]), r
