"""The local control plane is real: kube-apiserver v1.34 on etcd, with controller-manager and scheduler."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import kubectl

pytestmark = pytest.mark.integration


def test_given_cluster_up_then_server_reports_v1_34_and_readyz_ok(kube_env):
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_given_a_configmap_when_applied_then_it_round_trips(namespace):
    kubectl("-n", namespace, "create", "configmap", "round-trip", "--from-literal=answer=42")
    got = json.loads(kubectl("-n", namespace, "get", "configmap", "round-trip", "-o", "json").stdout)
    assert got["data"] == {"answer": "42"}


def test_given_a_job_when_created_then_controller_manager_creates_its_pod(namespace):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "echo"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "echo",
                        "image": "localhost/mlops-pause:3.10",
                        "imagePullPolicy": "Never",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True},
                    }],
                }
            },
        },
    }
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(job))
    deadline = time.monotonic() + 60
    pods: list = []
    while time.monotonic() < deadline:
        pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "job-name=echo", "-o", "json").stdout)["items"]
        if pods:
            break
        time.sleep(1)
    assert len(pods) == 1, "the Job controller (kube-controller-manager) did not create the Job's Pod"
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "Job"


def test_given_restricted_namespace_when_pod_may_run_as_root_then_rejected_by_pod_security(namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": "localhost/mlops-pause:3.10"}]}}
    result = kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted' in result.stderr
