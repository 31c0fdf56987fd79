"""Pod configuration and serving autoscaling on the real cluster (docs/pods.md).

A ModelVersion whose training pod runs under its own service account, with a toleration and another UID
than the image's, trains and is Ready. A ModelDeployment with a service account, an image pull secret,
tolerations, a node selector, a HorizontalPodAutoscaler and a PodDisruptionBudget serves: its pods carry
every setting (the router's all but the service account), the autoscaler targets the stable version's
Deployment, and the replicas are the autoscaler's: raising minReplicas scales the Deployment through the
HPA controller while the operator leaves spec.replicas alone; dropping autoscaling deletes the HPA and
the operator sizes the Deployment again. The local cluster has no metrics-server, so the HPA cannot read
CPU: it still enforces minReplicas/maxReplicas, which is what this test relies on, never on scaling by load.

Then the observability pack: after a canary promoted under labelled load, every panel query of every
shipped Grafana dashboard returns data from the real Prometheus.
"""

from __future__ import annotations

import json

import httpx
import pytest

from mlops_operator.builders.serving import router_name, version_name
from mlops_operator.providers.traffic.scaling import HANDOVER_MANAGER
from mlops_operator.providers.kube import FIELD_MANAGER
from tests.conftest import REPO_ROOT, kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase, wait_until
from tests.e2e.rollout_kit import ROWS, get, modelversion, service_url, unique_names, wait_ready

pytestmark = pytest.mark.e2e

TOLERATION = {"key": "mlops.dev/e2e-pool", "operator": "Equal", "value": "serving", "effect": "NoSchedule"}
NODE_SELECTOR = {"kubernetes.io/os": "linux"}


def _pods(ns: str, selector: str) -> list[dict]:
    return json.loads(kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]


def _deployment(ns: str, name: str) -> dict | None:
    """The Deployment with its managedFields (kubectl leaves them out unless asked)."""
    got = kubectl("-n", ns, "get", "deployment", name, "-o", "json", "--show-managed-fields", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def _replicas_managers(deployment: dict) -> set[str]:
    assert deployment["metadata"].get("managedFields"), "no managedFields to read"
    return {f"{e['manager']}/{e['operation']}" for e in deployment["metadata"].get("managedFields", [])
            if "f:replicas" in (e.get("fieldsV1") or {}).get("f:spec", {})}


def _setup_identities(ns: str) -> None:
    for account in ("bc-trainer", "bc-serving"):
        kubectl("-n", ns, "create", "serviceaccount", account)
    kubectl("-n", ns, "create", "secret", "docker-registry", "corp-registry", "--docker-server=registry.invalid",
            "--docker-username=e2e", "--docker-password=not-a-real-password")


def test_given_pod_overrides_and_an_hpa_when_applied_then_training_and_serving_pods_carry_them_and_the_hpa_owns_replicas(
        user_namespace):
    ns = user_namespace
    _setup_identities(ns)
    version, second = unique_names("pods", "pods2")

    # --- training: own service account (no token), a toleration, another UID than the image's 10001
    mv = modelversion(version, 20)
    mv["spec"]["training"]["pod"] = {
        "serviceAccountName": "bc-trainer", "tolerations": [TOLERATION],
        "securityContext": {"runAsUser": 4242, "runAsGroup": 4242, "fsGroup": 4242}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(mv))
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(modelversion(second, 21)))  # trains meanwhile
    status = wait_for_phase(ns, "mv", version, {"Ready", "Rejected", "Failed"}, 420)["status"]
    assert status["phase"] == "Ready", status
    (trainer,) = _pods(ns, f"job-name={status['lineage']['job']}")
    spec = trainer["spec"]
    assert spec["serviceAccountName"] == "bc-trainer" and spec["automountServiceAccountToken"] is False
    assert TOLERATION in spec["tolerations"]
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["fsGroup"]) == (4242, 4242)
    assert trainer["status"]["phase"] == "Succeeded"

    # --- serving: identity, pull secret, placement, an autoscaler (min 2) and a disruption budget
    md = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
          "spec": {"model": "breast-cancer", "version": version, "traffic": {"router": "builtin"},
                   "serving": {"replicas": 1,
                               "pod": {"serviceAccountName": "bc-serving", "imagePullSecrets": [{"name": "corp-registry"}],
                                       "tolerations": [TOLERATION], "nodeSelector": NODE_SELECTOR},
                               "autoscaling": {"minReplicas": 2, "maxReplicas": 3, "targetCpuUtilization": 80},
                               "podDisruptionBudget": {"maxUnavailable": 1}}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(md))
    st = wait_for_phase(ns, "mdep", "bc", {"Succeeded", "Failed", "Degraded"}, 300)["status"]
    assert st["phase"] == "Succeeded" and st["stableVersion"] == version, st
    base = service_url(ns, "bc")
    wait_ready(base, timeout=30)
    answer = httpx.post(f"{base}/v1/models/breast-cancer:predict", json={"instances": ROWS[:3]}, timeout=10)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3

    stable = version_name("bc", version)
    servers = _pods(ns, f"mlops.dev/modeldeployment=bc,app.kubernetes.io/component=serving")
    assert len(servers) >= 2
    for pod in servers:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "bc-serving" and spec["automountServiceAccountToken"] is False
        assert spec["imagePullSecrets"] == [{"name": "corp-registry"}]
        assert TOLERATION in spec["tolerations"] and spec["nodeSelector"] == NODE_SELECTOR
        assert pod["status"]["phase"] == "Running"
    routers = _pods(ns, "mlops.dev/modeldeployment=bc,app.kubernetes.io/component=router")
    assert routers and all(TOLERATION in p["spec"]["tolerations"] and p["spec"]["serviceAccountName"] == "default"
                           and p["spec"]["imagePullSecrets"] == [{"name": "corp-registry"}] for p in routers)

    hpa = get(ns, "hpa", "mdep-bc")
    assert hpa is not None and hpa["spec"]["scaleTargetRef"]["name"] == stable
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
    assert hpa["metadata"]["ownerReferences"][0]["name"] == "bc"
    pdb = wait_until("the PodDisruptionBudget counts the two server pods",
                 lambda: (p := get(ns, "pdb", "mdep-bc")) and (p.get("status") or {}).get("expectedPods") == 2 and p)
    assert pdb["spec"]["maxUnavailable"] == 1

    # The operator no longer owns stable's replicas ...
    deployment = _deployment(ns, stable)
    managers = _replicas_managers(deployment)
    assert f"{FIELD_MANAGER}/Apply" not in managers, managers
    # it handed them over at their value (2 = minReplicas: the autoscaler had nothing to change), so the
    # Deployment never fell back to the default of 1 replica on the way
    assert f"{HANDOVER_MANAGER}/Apply" in managers and deployment["spec"]["replicas"] == 2, managers

    # ... so raising the autoscaler's floor scales the Deployment through the HPA controller, and stays.
    kubectl("-n", ns, "patch", "mdep", "bc", "--type=merge", "-p",
            json.dumps({"spec": {"serving": {"autoscaling": {"minReplicas": 3}}}}))
    wait_until("the HPA's floor is 3", lambda: (get(ns, "hpa", "mdep-bc") or {}).get("spec", {}).get("minReplicas") == 3)
    scaled = wait_until("the HPA controller scales stable to 3 Ready pods",
                    lambda: (d := _deployment(ns, stable)) and (d.get("status") or {}).get("readyReplicas") == 3
                    and d)
    assert scaled["spec"]["replicas"] == 3
    assert f"{FIELD_MANAGER}/Apply" not in _replicas_managers(scaled)
    generation = get(ns, "mdep", "bc")["metadata"]["generation"]
    wait_until("the operator has reconciled the new generation",
           lambda: (get(ns, "mdep", "bc") or {}).get("status", {}).get("observedGeneration") == generation)
    wait_until("the PodDisruptionBudget follows to 3 pods",
           lambda: ((get(ns, "pdb", "mdep-bc") or {}).get("status") or {}).get("expectedPods") == 3)
    assert _deployment(ns, stable)["spec"]["replicas"] == 3  # nobody wrote it back

    # A canary to the second version while the HPA holds stable at 3: the candidate is sized from those 3
    # pods and the next weight (before 10 %: 1 pod, at 10 % on the way to 50 %: 2, at 50 %: all 3).
    assert wait_for_phase(ns, "mv", second, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    kubectl("-n", ns, "patch", "mdep", "bc", "--type=merge", "-p", json.dumps({"spec": {
        "version": second, "strategy": {"type": "Canary", "canary": {
            "steps": [{"weight": 10, "pause": "20s"}, {"weight": 50, "pause": "20s"}]}}}}))
    candidate, sizes = version_name("bc", second), []

    def promoted() -> bool:
        st = (get(ns, "mdep", "bc") or {}).get("status") or {}
        deployment = _deployment(ns, candidate)
        if st.get("candidateVersion") == second and deployment is not None:
            size = (st.get("canaryWeight") or 0, deployment["spec"].get("replicas"))
            if not sizes or sizes[-1] != size:
                sizes.append(size)
        return st.get("stableVersion") == second and st.get("phase") == "Succeeded"

    wait_until("the canary to the second version is promoted", promoted, timeout=300)
    assert sizes[0] == (0, 1) and (10, 2) in sizes and (50, 3) in sizes, sizes
    stable = candidate
    wait_until("the HPA follows the new stable version",
               lambda: (get(ns, "hpa", "mdep-bc") or {}).get("spec", {}).get("scaleTargetRef", {}).get("name") == stable)
    managers = _replicas_managers(_deployment(ns, stable))
    assert f"{FIELD_MANAGER}/Apply" not in managers and f"{HANDOVER_MANAGER}/Apply" in managers, managers

    # Dropping autoscaling and the budget: both are deleted and the operator sizes stable again.
    kubectl("-n", ns, "patch", "mdep", "bc", "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/spec/serving/autoscaling"},
        {"op": "remove", "path": "/spec/serving/podDisruptionBudget"}]))
    wait_until("the HPA and the PDB are deleted",
           lambda: get(ns, "hpa", "mdep-bc") is None and get(ns, "pdb", "mdep-bc") is None)
    resized = wait_until("stable is back at serving.replicas",
                     lambda: (d := _deployment(ns, stable)) and d["spec"].get("replicas") == 1 and d)
    assert f"{FIELD_MANAGER}/Apply" in _replicas_managers(resized)
    assert get(ns, "deployment", router_name("bc")) is not None


# ------------------------------------------------------------------------------------------ dashboards

DASHBOARDS = sorted((REPO_ROOT / "charts" / "mlops-operator" / "files" / "dashboards").glob("*.json"))


def _query(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, f"{expr}: {answer.text}"
    return answer.json()["data"]["result"]


def _panel_query(expr: str, namespace: str) -> str:
    """The panel's query for this test's namespace. The operator's rollout gauges carry the ModelDeployment's
    namespace as a label of their own, which the local annotation-based scrape (no honor_labels) renames to
    exported_namespace: for those the $namespace filter matches every namespace (checked for this one below)."""
    return expr.replace("$namespace", ".*" if "mlops_operator_" in expr else namespace)


def test_given_a_canary_promoted_under_labelled_load_when_every_dashboard_panel_is_queried_then_each_returns_data(
        user_namespace, cluster_env):
    ns, prometheus = user_namespace, cluster_env["PROMETHEUS_URL"]
    v1, v2 = kit.unique_names("d1", "d2")
    kit.train(ns, {v1: kit.FAST, v2: 40})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE)))
    with kit.LabelledLoad(base):
        kit.patch_spec(ns, {"version": v2})
        kit.watch(ns, lambda st: st.get("stableVersion") == v2 and st.get("phase") == "Succeeded", 300)
        # The rollout gauges of this very ModelDeployment (under either label name, see _panel_query).
        for series, expected in ((f'mlops_operator_modeldeployment_phase{{name="bc",phase="Succeeded"}}', 1.0),
                                 (f'mlops_operator_modeldeployment_analysis_passed{{name="bc",metric="error-rate"}}',
                                  1.0)):
            wait_until(f"{series} for {ns}", lambda s=series, e=expected: [
                r for r in _query(prometheus, s)
                if ns in (r["metric"].get("namespace"), r["metric"].get("exported_namespace"))
                and float(r["value"][1]) == e], timeout=120)
        answered = []
        for path in DASHBOARDS:
            for panel in json.loads(path.read_text())["panels"]:
                expr = _panel_query(panel["targets"][0]["expr"], ns)
                wait_until(f"{path.name}: {panel['title']}: {expr}", lambda e=expr: _query(prometheus, e), timeout=180)
                answered.append(f"{path.stem}/{panel['title']}")
    assert len(answered) == sum(len(json.loads(p.read_text())["panels"]) for p in DASHBOARDS) >= 20
