"""A real node: kubelet + containerd + runc run pods; bridge CNI, kube-proxy and CoreDNS connect them;
nothing routes past this machine. Pods use the offline-built runtime image under Pod Security "restricted"."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.conftest import REPO_ROOT, kubectl

pytestmark = pytest.mark.integration

RUNTIME_IMAGE = "localhost/mlops-runtime:dev"
RESTRICTED_CONTAINER = {
    "imagePullPolicy": "Never",
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
}


@pytest.fixture(scope="module", autouse=True)
def _node(node_enabled):
    if not node_enabled:
        pytest.fail("the node is disabled (MLOPS_NODE=0); run `make cluster-up` with the node")


def _job(name: str, args: list[str]) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 240, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": RUNTIME_IMAGE, "command": args, **RESTRICTED_CONTAINER}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }}},
    }


def _wait_job(namespace: str, name: str, timeout: float = 240) -> str:
    kubectl("-n", namespace, "wait", f"job/{name}", "--for=condition=Complete", f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
    job = json.loads(kubectl("-n", namespace, "get", "job", name, "-o", "json").stdout)
    logs = kubectl("-n", namespace, "logs", f"job/{name}", check=False).stdout + kubectl("-n", namespace, "logs", f"job/{name}", check=False).stderr
    assert job["status"].get("succeeded") == 1, f"job {name} did not succeed: {job['status']}\nlogs:\n{logs}"
    return logs


def test_given_cluster_up_then_node_is_ready():
    node = json.loads(kubectl("get", "node", "mlops-node", "-o", "json").stdout)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True", ready
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.34.")


def test_given_runtime_image_when_job_imports_stack_then_completes_as_non_root_with_readonly_root(namespace):
    script = ("import os, sklearn, onnxruntime, mlops_operator; "
              "assert os.getuid() != 0; "
              "open('/tmp/ok','w').write('x'); "
              "import errno\n"
              "try:\n    open('/usr/x','w')\nexcept OSError as e:\n    assert e.errno == errno.EROFS, e\n"
              "else:\n    raise SystemExit('root filesystem is writable')\n"
              "print('uid', os.getuid(), 'imports ok')")
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_job("imports", ["python", "-c", script])))
    logs = _wait_job(namespace, "imports")
    assert "imports ok" in logs
    assert "uid 0 " not in logs


def test_given_deployment_and_service_then_reachable_from_another_pod_by_dns_and_cluster_ip(namespace):
    server = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": RUNTIME_IMAGE, **RESTRICTED_CONTAINER,
                                     "command": ["python", "-m", "http.server", "8080", "--directory", "/tmp"],
                                     "ports": [{"containerPort": 8080}],
                                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}],
                     "volumes": [{"name": "tmp", "emptyDir": {}}]}}},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 8080}]}}
    for obj in (server, service):
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    cluster_ip = json.loads(kubectl("-n", namespace, "get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    script = (
        "import urllib.request, socket\n"
        f"for url in ['http://web.{namespace}.svc.cluster.local:8080/', 'http://{cluster_ip}:8080/', 'http://web:8080/']:\n"
        "    assert urllib.request.urlopen(url, timeout=10).status == 200, url\n"
        "    print('reached', url)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80)\n"
        "except socket.gaierror:\n"
        "    print('outside names are not resolved')\n"
        "else:\n"
        "    raise SystemExit('cluster DNS resolved a name outside the cluster')\n"
    )
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_job("client", ["python", "-c", script])))
    logs = _wait_job(namespace, "client")
    assert logs.count("reached") == 3
    assert "outside names are not resolved" in logs


def test_given_node_networking_then_pods_cannot_route_past_this_machine():
    # Proven by inspecting the rules, never by sending traffic to an outside address.
    out = subprocess.run(["bash", str(REPO_ROOT / "tests/infra/node-net.sh"), "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "-j DROP" in out.stdout
    cni = json.loads((REPO_ROOT / ".local/cni/net.d/10-mlops.conflist").read_text())
    assert cni["plugins"][0]["ipMasq"] is False
    corefile = (REPO_ROOT / ".local/Corefile").read_text()
    assert not re.search(r"^\s*forward\b", corefile, re.M), "cluster DNS must not forward queries"
