"""e2e fixtures: the operator installed with its Helm chart (`make install`) into the local cluster, and a
user namespace holding the S3 Secrets the operator mounts into its pods: `mlops-s3` (read-write) for training
and materialize Jobs and, when the cluster has MinIO's read-only user, `mlops-s3-readonly` for model servers
(the chart's serving.s3SecretName), so every e2e rollout proves serving needs no write access."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT, kubectl, poll_until


READONLY_SECRET = "mlops-s3-readonly"
ONLINE_SECRET = "mlops-redis"
OPERATOR_REPLICAS = 2  # the chart's replicaCount: leader and standby
# Seconds between the operator's timer passes over each object (its default is 10): a flow waits for the pass
# that notices a finished Job, a ready pod or an elapsed pause, so a shorter one makes every flow shorter
# without changing what it proves.
RECONCILE_INTERVAL = "3"


def readonly_s3_keys(env: dict[str, str]) -> dict[str, str] | None:
    """The read-only MinIO user's keys under the names the pods read (None on a cluster without it)."""
    if not env.get("S3_READONLY_ACCESS_KEY_ID"):
        return None
    return {"AWS_ACCESS_KEY_ID": env["S3_READONLY_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": env["S3_READONLY_SECRET_ACCESS_KEY"]}


def create_s3_secrets(namespace: str, s3_env: dict[str, str], cluster_env: dict[str, str]) -> None:
    """`mlops-s3` (read-write: Jobs) and, when the cluster has the read-only user, `mlops-s3-readonly`
    (model servers) in ``namespace``; values go through stdin, never argv."""
    data = {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET")}
    secrets = {"mlops-s3": data}
    readonly = readonly_s3_keys(cluster_env)
    if readonly:
        secrets[READONLY_SECRET] = {**data, **readonly}
    if cluster_env.get("REDIS_PASSWORD"):  # the online store's password (chart value onlineStore.secretName)
        secrets[ONLINE_SECRET] = {"REDIS_PASSWORD": cluster_env["REDIS_PASSWORD"]}
    for name, values in secrets.items():
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
                  "stringData": values}
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(secret))


@pytest.fixture(scope="session")
def installed_operator(kube_env, node_enabled):
    if not node_enabled:
        pytest.fail("e2e needs the node: run `make cluster-up` (without MLOPS_NODE=0)")
    images = subprocess.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True).stdout.split()
    for image in ("localhost/mlops-runtime:dev", "localhost/mlops-operator:dev"):
        if image not in images:
            pytest.fail(f"{image} is not on the node: run `make images`")
    env = {**os.environ, "MLOPS_RECONCILE_INTERVAL": RECONCILE_INTERVAL}
    if readonly_s3_keys(kube_env):
        env["SERVING_S3_SECRET"] = READONLY_SECRET
    result = subprocess.run(["bash", str(REPO_ROOT / "tests/infra/install.sh")], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f"make install failed:\n{result.stdout}\n{result.stderr}"
    # The integration tier pauses an installed operator (scale 0); a new image under the same tag needs new
    # pods: scale up to the chart's default (two leader-elected replicas: only the Lease holder acts),
    # restart, then wait for the rollout.
    kubectl("-n", "mlops-system", "scale", "deployment/mlops-operator", f"--replicas={OPERATOR_REPLICAS}")
    kubectl("-n", "mlops-system", "rollout", "restart", "deployment/mlops-operator")
    kubectl("-n", "mlops-system", "rollout", "status", "deployment/mlops-operator", "--timeout=180s", timeout=200)
    return "mlops-system"


@pytest.fixture()
def user_namespace(installed_operator, s3_env, cluster_env, request):
    """A restricted namespace with the `mlops-s3` Secret (and `mlops-s3-readonly` for model servers when the
    cluster has the read-only user), as a user of the operator would set it up."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    create_s3_secrets(name, s3_env, cluster_env)
    yield name
    if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture()
def second_namespace(user_namespace, s3_env, cluster_env):
    """Another team's namespace, set up exactly like the first (same Secret names, same bucket)."""
    name = f"{user_namespace}-b"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    create_s3_secrets(name, s3_env, cluster_env)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_for_phase(namespace: str, kind: str, name: str, phases: set[str], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    obj: dict = {}
    while time.monotonic() < deadline:
        got = kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
        if got.returncode == 0:
            obj = json.loads(got.stdout)
            if obj.get("status", {}).get("phase") in phases:
                return obj
        time.sleep(1)
    pytest.fail(f"{kind}/{name} did not reach {phases} in {timeout}s; status={obj.get('status')}\n"
                f"operator logs:\n{operator_logs(40)}")


def operator_logs(tail: int = 30) -> str:
    """The installed operator's last log lines, for a failure message."""
    return kubectl("-n", "mlops-system", "logs", "deployment/mlops-operator", f"--tail={tail}", check=False).stdout


def wait_until(what: str, probe, timeout: float = 120, every: float = 1.0):
    """Poll ``probe`` every ``every`` seconds until it returns something truthy (returned); fail with the
    operator's log."""
    return poll_until(what, probe, timeout, every, lambda: f"operator:\n{operator_logs()}")


def operator_metrics() -> dict[str, list]:
    """The leader's /metrics, through the operator's Service (it selects only the pod that holds the Lease)."""
    svc = json.loads(kubectl("-n", "mlops-system", "get", "svc", "mlops-operator", "-o", "json").stdout)
    text = httpx.get(f"http://{svc['spec']['clusterIP']}:8081/metrics", timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def reconciles(kind: str) -> float:
    """Reconcile passes of ``kind`` the leader ran so far (every result: changed, unchanged, retrying...)."""
    return sum(s.value for s in operator_metrics().get("mlops_operator_reconciles", [])
               if s.name == "mlops_operator_reconciles_total" and s.labels.get("kind") == kind)


def wait_reconciles(kind: str, plural: str, passes: int = 3, timeout: float = 120) -> None:
    """A negative proof's wait: until the leader has run ``passes`` more passes per live object of ``kind``
    (the counter is per kind), instead of sleeping for a guess of how long that takes. Whatever must not
    happen had that many chances to happen. A change of leader (the counter restarts) restarts the count."""
    items = json.loads(kubectl("get", plural, "-A", "-o", "json").stdout)["items"]
    live = sum(1 for o in items if not o["metadata"].get("deletionTimestamp"))  # deleted ones get no pass
    need, start = passes * max(live, 1), reconciles(kind)

    def enough() -> bool:
        nonlocal start
        now = reconciles(kind)
        if now < start:
            start = now
        return now - start >= need

    wait_until(f"{need} more {kind} passes", enough, timeout)
