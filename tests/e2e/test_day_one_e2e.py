"""Day one with the installed chart: `helm test` passes against the release, and what generic tools read
(kstatus conditions, `kubectl wait`, the printer columns) tells a served deployment from a rejected version."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import tests.e2e.rollout_kit as kit
from tests.conftest import REPO_ROOT, kubectl, kubectl_wait, printed_columns
from tests.e2e.conftest import READONLY_SECRET, create_s3_secrets, readonly_s3_keys, wait_until

RELEASE = "mlops-operator"

pytestmark = pytest.mark.e2e


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}



def test_given_the_installed_release_when_helm_test_runs_then_its_restricted_pod_finds_health_and_every_kind(
        installed_operator):
    helm = shutil.which("helm")
    assert helm, "helm is on the local cluster's PATH (.local/env)"
    result = subprocess.run([helm, "test", RELEASE, "-n", installed_operator, "--logs", "--timeout", "3m"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
    assert f"http://{RELEASE}.{installed_operator}.svc:8080/healthz: HTTP 200" in result.stdout, result.stdout
    shipped = sorted(p.name.removesuffix(".mlops.dev.yaml") for p in (REPO_ROOT / "crds").glob("*.mlops.dev.yaml"))
    assert f"mlops.dev/v1alpha1 serves: {', '.join(shipped)}" in result.stdout, result.stdout
    assert "missing:" not in result.stdout
    pod = json.loads(kubectl("-n", installed_operator, "get", "pod", f"{RELEASE}-test", "-o", "json").stdout)
    assert pod["status"]["phase"] == "Succeeded"


def test_given_a_served_deployment_and_a_rejected_version_when_read_generically_then_ready_versus_stalled(
        user_namespace, s3_env, cluster_env):
    ns = user_namespace
    good, strict = kit.unique_names("v1", "strict")
    rejected = kit.modelversion(strict, kit.FAST)
    rejected["spec"]["gates"] = {"minMetrics": {"accuracy": 0.9999}}  # a bar no model of this data clears
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(rejected))
    kit.train(ns, {good: kit.FAST})

    # The terminal failure: Stalled with the gate's reason, and `kubectl wait` ends on it.
    kubectl_wait(ns, f"mv/{strict}", "Stalled", seconds=300)
    mv = kit.get(ns, "mv", strict)
    assert mv["status"]["phase"] == "Rejected"
    conds = conditions(mv)
    assert (conds["Stalled"]["status"], conds["Reconciling"]["status"], conds["Ready"]["status"]) == \
        ("True", "False", "False")
    assert conds["Stalled"]["reason"] == conds["Ready"]["reason"] and "accuracy" in conds["Stalled"]["message"]
    assert mv["status"]["observedGeneration"] == mv["metadata"]["generation"]
    shown = printed_columns(ns, f"mv/{strict}")
    assert (shown["PHASE"], shown["READY"]) == ("Rejected", "False")

    # Its serving Secret missing: CandidateReady says why the pods do not start, naming the Secret; once the
    # Secret exists the same rollout goes on (nothing re-applied).
    serving_secret = READONLY_SECRET if readonly_s3_keys(cluster_env) else "mlops-s3"
    kubectl("-n", ns, "delete", "secret", serving_secret)
    md = kit.deployment(good, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE))
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(md))
    candidate = lambda: conditions(kit.get(ns, "mdep", "bc") or {}).get("CandidateReady") or {}  # noqa: E731
    wait_until("CandidateReady names the missing Secret", lambda: serving_secret in candidate().get("message", ""),
               timeout=120)
    said = candidate()
    assert said["status"] == "False" and said["reason"] == "PodsNotReady", said
    assert f'CreateContainerConfigError: secret "{serving_secret}" not found' in said["message"], said

    # The success: a deployment serving, Ready, settled at its generation, its entry URL in `kubectl get`.
    create_s3_secrets(ns, s3_env, cluster_env)
    kit.deploy_first(ns, md)
    assert "(" not in candidate().get("message", ""), candidate()  # served now: no problem left to report
    kubectl_wait(ns, "mdep/bc", "Ready", seconds=60)
    kubectl_wait(ns, "mdep/bc", "Reconciling=False", seconds=60)
    md = kit.get(ns, "mdep", "bc")
    conds = conditions(md)
    assert (conds["Ready"]["status"], conds["Reconciling"]["status"], conds["Stalled"]["status"]) == \
        ("True", "False", "False")
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    assert md["status"]["endpoint"]["url"] == f"http://bc.{ns}.svc:8080"
    shown = printed_columns(ns, "mdep/bc")
    assert (shown["PHASE"], shown["READY"], shown["REASON"], shown["ENDPOINT"]) == \
        ("Succeeded", "True", "Serving", f"http://bc.{ns}.svc:8080")
