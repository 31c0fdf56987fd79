"""What a platform team meets at install time: `kubeVersion` refuses clusters older than the CRDs need, image
tags follow the appVersion, and the `helm test` hook is a restricted pod that the operator's own selectors
never pick up. (The chart README's value table is checked in the unit tier: tests/unit/test_chart_readme.py.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.chart.test_chart import (
    APP_VERSION,
    CHART,
    MIN_KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    assert_restricted,
    helm_bin,
    helm_template,
    load_docs,
    of_kind,
    one,
    render,
    run,
)

pytestmark = pytest.mark.chart

def test_given_a_cluster_older_than_the_crds_need_when_rendered_then_refused_and_the_minimum_renders():
    too_old = run(helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.29.9",
                  check=False)
    assert too_old.returncode != 0 and "requires kubeVersion" in too_old.stderr
    assert MIN_KUBE_VERSION == "1.30.0"
    assert one(render(), "Deployment")  # the helper renders at the minimum


def test_given_explicit_image_refs_when_rendered_then_they_win_over_the_app_version():
    docs = render("image.repository=localhost/mlops-operator", "image.tag=dev",
                  "runtimeImage.repository=localhost/mlops-runtime", "runtimeImage.tag=dev")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/mlops-operator:dev"
    assert {e["name"]: e.get("value") for e in container["env"]}["MLOPS_RUNTIME_IMAGE"] == "localhost/mlops-runtime:dev"
    default = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert default["image"].endswith(f":{APP_VERSION}")


def hook_docs(*sets: str) -> list[dict[str, Any]]:
    return [d for d in load_docs(helm_template(*sets, hooks=True).stdout)
            if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


def test_given_defaults_when_rendered_with_hooks_then_a_restricted_test_pod_with_its_own_account_and_no_rbac():
    docs = hook_docs()
    pod, account = one(docs, "Pod"), one(docs, "ServiceAccount")
    assert_restricted(pod["spec"])
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == f"localhost/mlops-operator:{APP_VERSION}"
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"] == "mlops-operator-test"
    assert account["automountServiceAccountToken"] is False and pod["spec"]["automountServiceAccountToken"] is True
    assert container["command"][-3] == "http://mlops-operator.mlops-system.svc:8080/healthz"
    shipped = sorted(p.name.removesuffix(".mlops.dev.yaml") for p in (CHART / "crds").glob("*.mlops.dev.yaml"))
    assert sorted(container["command"][-1].split(",")) == shipped and "modeldeployments" in shipped
    # No Role or binding comes with it: API discovery is open to every authenticated identity.
    everything = load_docs(helm_template(hooks=True).stdout)
    bound = [s.get("name") for d in everything if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
             for s in d.get("subjects", [])]
    assert "mlops-operator-test" not in bound


def test_given_the_test_pod_when_compared_with_operator_selectors_then_none_selects_it():
    labels = one(hook_docs(), "Pod")["metadata"]["labels"]
    docs = render()
    selectors = [one(docs, "Service")["spec"]["selector"], one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]]
    selectors += [p["spec"]["podSelector"]["matchLabels"] for p in of_kind(docs, "NetworkPolicy")]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector


def test_given_tests_disabled_when_rendered_with_hooks_then_no_test_pod():
    assert hook_docs("tests.enabled=false") == []


def test_given_the_test_script_when_the_operator_does_not_answer_then_it_fails_and_says_so(tmp_path):
    """The script the hook runs, run here against a port nothing listens on: no health, a non-zero exit."""
    script = (CHART / "files" / "helm-test.py").read_text()
    result = subprocess.run([sys.executable, "-c", script, "http://127.0.0.1:9/healthz", "0", "modelversions"],
                            capture_output=True,
                            text=True, timeout=60, env={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                                        "KUBERNETES_SERVICE_PORT": "9"})
    assert result.returncode != 0
    assert "no healthy answer" in result.stdout and "discovery of mlops.dev/v1alpha1 failed" in result.stdout
