"""The Helm chart: lint, values schema, the operator Deployment, Service, Secrets and Prometheus gating.

The chart tier (`make test-chart`, marker `chart`): renders with the real `helm template` and
`kubectl kustomize`, no cluster needed; `make test-chart` builds both (tests/infra/build-binaries.sh chart).
The helpers at the top are shared with the other test_chart_*.py modules (`from test_chart import ...`:
pytest puts this directory on sys.path).
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
from typing import Any, Iterable

import pytest
import yaml

from tests.pod_security import assert_restricted  # noqa: F401  (re-exported: test_chart_security uses it)

pytestmark = pytest.mark.chart

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "mlops-operator"
RELEASE, NAMESPACE = "mlops-operator", "mlops-system"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
APP_VERSION = CHART_META["appVersion"]
# Offline renders target the oldest Kubernetes the chart accepts (helm built without version ldflags assumes 1.20).
MIN_KUBE_VERSION = CHART_META["kubeVersion"].split(">=")[1].strip().split("-")[0]
CACHE = pathlib.Path(os.environ.get("MLOPS_CACHE_DIR", pathlib.Path.home() / ".cache" / "mlops-operator"))
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"

# Value sets covering every rendering mode of the chart.
MODES: dict[str, list[str]] = {
    "default": [],
    "namespaced-rbac": ["rbac.namespaced=true", "watchNamespaces={team-a,team-b}"],
    "all-providers": ["rbac.gatewayAPI=true", "rbac.kserve=true", "watchNamespaces={team-*}"],
    "existing-secrets": ["s3.existingSecret=my-s3", "alerts.existingSecret=my-token", "alerts.existingSecretKey=t"],
    "chart-s3-credentials": ["s3.endpoint=http://minio:9000", "s3.accessKeyId=AKIDEXAMPLE",
                             "s3.secretAccessKey=wJalrXUtnFEMIEXAMPLEKEY"],
}


def find_tool(name: str, *candidates: pathlib.Path) -> str:
    """The tool from $<NAME>, the local cluster's pinned build or PATH; fails (never skips) when absent."""
    for path in (os.environ.get(name.upper()), *candidates, shutil.which(name)):
        if path and pathlib.Path(path).is_file():
            return str(path)
    pytest.fail(f"{name} not found: run `make test-chart` (builds it into {CACHE}) or put it on PATH")


def helm_bin() -> str:
    return find_tool("helm", CACHE / "tools" / "bin" / "helm")


def kubectl_bin() -> str:
    """kubectl (for `kubectl kustomize`), preferring the cluster's pinned build."""
    pinned = sorted((CACHE / "kubernetes").glob("v*/bin/kubectl"))
    return find_tool("kubectl", *reversed(pinned))


def run(*argv: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv[:3])} failed ({result.returncode}):\n{result.stderr}")
    return result


def helm_template(*sets: str, set_json: Iterable[str] = (), api_versions: Iterable[str] = (),
                  include_crds: bool = False, check: bool = True, fresh: bool = False,
                  hooks: bool = False) -> subprocess.CompletedProcess:
    """`helm template` of the chart; identical calls share one run (the machine is small) unless `fresh`.
    The `helm test` hook is left out unless ``hooks`` (what `helm install` applies, not what `helm test` adds)."""
    args = (tuple(sets), tuple(set_json), tuple(api_versions), include_crds, check, hooks)
    if fresh:
        return _helm_template.__wrapped__(*args)
    return _helm_template(*args)


@functools.lru_cache(maxsize=None)
def _helm_template(sets: tuple[str, ...], set_json: tuple[str, ...], api_versions: tuple[str, ...],
                   include_crds: bool, check: bool, hooks: bool) -> subprocess.CompletedProcess:
    argv = [helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", MIN_KUBE_VERSION]
    if not hooks:
        argv.append("--skip-tests")
    argv += [arg for value in sets for arg in ("--set", value)]
    argv += [arg for value in set_json for arg in ("--set-json", value)]
    argv += [arg for api in api_versions for arg in ("--api-versions", api)]
    if include_crds:
        argv.append("--include-crds")
    return run(*argv, check=check)


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(*sets: str, **kwargs: Any) -> list[dict[str, Any]]:
    return load_docs(helm_template(*sets, **kwargs).stdout)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def non_dashboard(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Objects of ``kind`` that are not Grafana dashboards (those carry the sidecar's label)."""
    return [d for d in of_kind(docs, kind) if "grafana_dashboard" not in d["metadata"].get("labels", {})]


def rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for doc in docs if doc["kind"] in ("ClusterRole", "Role") for rule in doc.get("rules", [])]


# --- lint and schema ---------------------------------------------------------------------------------------


def test_given_default_values_when_linted_strictly_then_clean():
    result = run(helm_bin(), "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(("value", "complaint"), [
    ("replicaCount=11", "/replicaCount"),
    ("leaderElection.retryPeriod=0", "/leaderElection/retryPeriod"),
    ("podDisruptionBudget.minAvailable=-1", "/podDisruptionBudget/minAvailable"),
    ("imagee.tag=x", "imagee"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("resources.limits.memory=lots", "/resources/limits/memory"),
    ("networkPolicy.egress.s3.ports={70000}", "/networkPolicy/egress/s3/ports/0"),
    ("networkPolicy.egress.apiServer.cidrs={not-a-cidr}", "/networkPolicy/egress/apiServer/cidrs/0"),
    ("s3.endpoint=minio:9000", "/s3/endpoint"),
], ids=lambda v: v if "=" in str(v) else "")
def test_given_a_bad_value_when_rendered_then_schema_rejects_it_naming_the_field(value, complaint):
    result = helm_template(value, check=False)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_given_namespaced_rbac_with_a_glob_when_rendered_then_rejected():
    """Roles need real namespaces; globs only work with the cluster-wide ClusterRole."""
    result = helm_template("rbac.namespaced=true", "watchNamespaces={team-*}", check=False)
    assert result.returncode != 0 and "/watchNamespaces/0" in result.stderr
    result = helm_template("rbac.namespaced=true", check=False)
    assert result.returncode != 0 and "watchNamespaces" in result.stderr


def _schema_paths(node: dict[str, Any], root: dict[str, Any], prefix: str = "") -> set[str]:
    if "$ref" in node:
        node = {**root["definitions"][node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    paths = set()
    for key, child in node.get("properties", {}).items():
        paths.add(prefix + key)
        paths |= _schema_paths(child, root, f"{prefix}{key}.")
    return paths


def _value_paths(values: Any, free_maps: set[str], prefix: str = "") -> set[str]:
    if not isinstance(values, dict) or prefix.rstrip(".") in free_maps:
        return set()
    paths = set()
    for key, child in values.items():
        paths.add(prefix + key)
        paths |= _value_paths(child, free_maps, f"{prefix}{key}.")
    return paths


def test_given_values_yaml_when_compared_with_the_schema_then_every_value_is_described_and_closed():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # Maps whose keys are user data (labels, selectors), not chart settings.
    free_maps = {"podAnnotations", "podLabels", "nodeSelector", "affinity", "serviceAccount.annotations",
                 "monitoring.serviceMonitor.labels", "monitoring.prometheusRule.labels",
                 "monitoring.rulesConfigMap.labels", "monitoring.podMonitor.labels", "monitoring.dashboards.labels",
                 "monitoring.dashboards.annotations", "podDefaults", "networkPolicy.monitoringNamespaceSelector",
                 "networkPolicy.monitoringPodSelector"}
    missing = _value_paths(values, free_maps) - _schema_paths(schema, schema)
    assert not missing, f"values without a schema entry: {sorted(missing)}"
    assert schema["additionalProperties"] is False


# --- S3 and alert token secrets ------------------------------------------------------------------------------


def test_given_s3_credentials_in_values_when_rendered_then_they_reach_the_pod_only_through_a_secret():
    docs = render(*MODES["chart-s3-credentials"])
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "mlops-operator-s3")
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == "wJalrXUtnFEMIEXAMPLEKEY"
    deployment = one(docs, "Deployment")
    assert "wJalrXUtnFEMIEXAMPLEKEY" not in yaml.safe_dump(deployment)
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    required = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for key in required | {"S3_ENDPOINT_URL", "S3_BUCKET", "AWS_REGION"}:
        assert "value" not in env[key]
        optional = {} if key in required else {"optional": True}
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "mlops-operator-s3", "key": key, **optional}


def test_given_existing_secrets_when_rendered_then_the_chart_creates_none_and_references_them():
    docs = render(*MODES["existing-secrets"])
    assert not of_kind(docs, "Secret")
    env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "my-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["MLOPS_ALERT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "my-token", "key": "t"}


def test_given_no_token_secret_when_rendered_then_a_random_token_is_generated_per_install():
    import base64

    tokens = []
    for _ in range(2):
        docs = render(fresh=True)
        secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "mlops-operator-alert-token")
        tokens.append(base64.b64decode(secret["data"]["token"]).decode())
        env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
        assert env["MLOPS_ALERT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-operator-alert-token", "key": "token"}
    assert all(len(token) == 40 and token.isalnum() for token in tokens)
    assert tokens[0] != tokens[1]


def test_given_ambient_credentials_when_rendered_then_no_credential_env_is_required():
    """No key id in values and no existing Secret: rely on the pod's web identity / instance role."""
    env = env_of(one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["S3_BUCKET"]["valueFrom"]["secretKeyRef"]["optional"] is True


# --- the Deployment and Service -------------------------------------------------------------------------------


def test_given_defaults_when_rendered_then_two_leader_elected_replicas_with_probes_ports_and_contract_env():
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    # Overlap is safe (only the Lease holder acts): a new standby comes up before an old pod goes.
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"localhost/mlops-operator:{APP_VERSION}"  # empty tag = the chart's appVersion
    assert container["command"] == ["mlops-operator"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "http": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(container)
    assert env["MLOPS_RUNTIME_IMAGE"]["value"] == f"localhost/mlops-runtime:{APP_VERSION}"
    assert env["MLOPS_S3_SECRET"]["value"] == "mlops-s3"
    assert env["MLOPS_NAMESPACES"]["value"] == ""
    assert env["MLOPS_IMAGE_PULL_POLICY"]["value"] == "IfNotPresent"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_given_defaults_when_rendered_then_the_service_exposes_http_and_health_to_the_operator_pod():
    docs = render()
    service = one(docs, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (8081, "http"), "health": (8080, "health")}
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    # Only the leader: the label it sets on its own pod when it takes the Lease.
    assert service["spec"]["selector"] == {**{k: pod_labels[k] for k in ("app.kubernetes.io/name",
                                                                        "app.kubernetes.io/instance")},
                                           "mlops.dev/leader": "true"}
    assert "mlops.dev/leader" not in pod_labels, "the chart never sets it: the elected pod does"
    assert "clusterIP" not in service["spec"]  # allocated by the cluster


def test_given_a_fixed_cluster_ip_when_rendered_then_the_service_uses_it_and_a_bad_one_is_refused():
    assert one(render("service.clusterIP=10.215.0.8"), "Service")["spec"]["clusterIP"] == "10.215.0.8"
    refused = helm_template("service.clusterIP=operator.local", check=False)
    assert refused.returncode != 0 and "clusterIP" in refused.stderr


# --- Prometheus integration gated on capabilities ------------------------------------------------------------


def test_given_no_prometheus_operator_when_rendered_then_rules_ship_as_a_configmap_only():
    docs = render()
    assert not of_kind(docs, "PrometheusRule") and not of_kind(docs, "ServiceMonitor")
    assert [c["metadata"]["name"] for c in non_dashboard(docs, "ConfigMap")] == ["mlops-operator-rules"]


def test_given_the_prometheus_operator_api_when_rendered_then_rule_and_monitor_replace_the_configmap():
    docs = render(api_versions=[PROMETHEUS_OPERATOR_API])
    assert one(docs, "PrometheusRule")["spec"]["groups"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service")["metadata"]["labels"].items()
    assert not non_dashboard(docs, "ConfigMap")


def test_given_the_prometheus_operator_api_when_disabled_in_values_then_nothing_of_it_renders():
    docs = render("monitoring.serviceMonitor.enabled=false", "monitoring.prometheusRule.enabled=false",
                  "monitoring.podMonitor.enabled=false", api_versions=[PROMETHEUS_OPERATOR_API])
    assert not of_kind(docs, "PrometheusRule") and not of_kind(docs, "ServiceMonitor")
    assert not of_kind(docs, "PodMonitor")


# --- read-only serving Secret and finished-Job TTL -------------------------------------------------------------


def test_given_defaults_when_rendered_then_servers_share_the_workload_secret_and_finished_jobs_stay():
    env = env_of(one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["MLOPS_SERVING_S3_SECRET"]["value"] == ""  # the operator falls back to MLOPS_S3_SECRET
    assert "MLOPS_JOB_TTL_SECONDS_AFTER_FINISHED" not in env


def test_given_a_serving_secret_and_a_job_ttl_when_rendered_then_both_reach_the_operator():
    docs = render("serving.s3SecretName=mlops-s3-readonly", "jobs.ttlSecondsAfterFinished=86400")
    env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["MLOPS_SERVING_S3_SECRET"]["value"] == "mlops-s3-readonly"
    assert env["MLOPS_S3_SECRET"]["value"] == "mlops-s3"  # Jobs keep the read-write Secret
    assert env["MLOPS_JOB_TTL_SECONDS_AFTER_FINISHED"]["value"] == "86400"
    big = render(set_json=["jobs.ttlSecondsAfterFinished=2592000"])  # JSON numbers arrive as floats
    big_env = env_of(one(big, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert big_env["MLOPS_JOB_TTL_SECONDS_AFTER_FINISHED"]["value"] == "2592000"


@pytest.mark.parametrize("value, complaint", [
    ("jobs.ttlSecondsAfterFinished=30", "/jobs/ttlSecondsAfterFinished"),
    ("jobs.ttlSecondsAfterFinished=soon", "/jobs/ttlSecondsAfterFinished"),
    ("serving.s3SecretName=Read_Only", "/serving/s3SecretName"),
])
def test_given_a_bad_serving_or_jobs_value_when_rendered_then_the_schema_rejects_it(value, complaint):
    result = helm_template(value, check=False)
    assert result.returncode != 0 and complaint in result.stderr


# --- high availability: leader election, PodDisruptionBudget, anti-affinity -----------------------------------


def test_given_defaults_when_rendered_then_every_replica_campaigns_for_the_lease_with_the_standard_timings():
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert {k: env[k]["value"] for k in ("MLOPS_LEADER_ELECTION", "MLOPS_LEADER_LEASE", "MLOPS_LEASE_DURATION",
                                         "MLOPS_RENEW_DEADLINE", "MLOPS_RETRY_PERIOD")} == {
        "MLOPS_LEADER_ELECTION": "true", "MLOPS_LEADER_LEASE": "mlops-operator", "MLOPS_LEASE_DURATION": "15",
        "MLOPS_RENEW_DEADLINE": "10", "MLOPS_RETRY_PERIOD": "2"}
    assert env["MLOPS_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MLOPS_POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # The standby answers /healthz itself, so both probes stay on the health port.
    assert container["livenessProbe"]["httpGet"] == container["readinessProbe"]["httpGet"] == {
        "path": "/healthz", "port": "health"}


def test_given_defaults_when_rendered_then_a_pdb_keeps_one_pod_and_replicas_prefer_different_nodes():
    docs = render()
    deployment = one(docs, "Deployment")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti, "a one-node cluster must still run both"
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_given_own_affinity_when_rendered_then_it_replaces_the_default_anti_affinity():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}}
    import json

    spec = one(render(set_json=[f"affinity={json.dumps(affinity)}"]), "Deployment")["spec"]["template"]["spec"]
    assert spec["affinity"] == affinity


def test_given_election_off_when_rendered_then_one_recreated_replica_alone_and_two_are_refused():
    docs = render("leaderElection.enabled=false", "replicaCount=1")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "MLOPS_LEADER_ELECTION" not in env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    assert not of_kind(docs, "PodDisruptionBudget") and not of_kind(docs, "Role")
    assert "affinity" not in deployment["spec"]["template"]["spec"]
    assert "mlops.dev/leader" not in one(docs, "Service")["spec"]["selector"]
    result = helm_template("leaderElection.enabled=false", check=False)
    assert result.returncode != 0 and "replicaCount > 1 needs leaderElection.enabled" in result.stderr


@pytest.mark.parametrize(("sets", "complaint"), [
    (("leaderElection.leaseDuration=10",), "leaseDuration must be greater than leaderElection.renewDeadline"),
    (("leaderElection.retryPeriod=9",), "renewDeadline must be greater than 1.2 * leaderElection.retryPeriod"),
])
def test_given_inconsistent_election_timings_when_rendered_then_refused(sets, complaint):
    result = helm_template(*sets, check=False)
    assert result.returncode != 0 and complaint in result.stderr
