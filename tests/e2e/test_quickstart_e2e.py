"""docs/quickstart.md, run as written on the local cluster: the chart installed with its batteries (in-cluster
MinIO, Prometheus, Alertmanager) as a second release that watches only the quickstart namespace, a version
trained and served, a canary promoted by the in-cluster Prometheus' analysis, and a drift alert from the
in-cluster Alertmanager that retrains. None of the host-run MinIO, Prometheus or Alertmanager is used.

Every command of the doc runs, in order, except the lines marked [kind], [Docker] or [registry] (this
machine has no Docker): their local equivalents are the doc's own `make images` (the offline build and
import) and step 2's install. `make images` itself is not run again here: it is a prerequisite of
`make test` (and of the e2e lock command), which ran it just before; the test checks that its three images
are on the node. Commands ending in `&` run in the background until the doc's `kill %1`.

The shared e2e operator (release mlops-operator in mlops-system) watches every namespace, so it is scaled to
zero while this test runs and scaled back afterwards; the CRDs are the cluster's, shared by both releases.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import time
from datetime import datetime

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.conftest import REPO_ROOT, kubectl
from tests.e2e import doc_kit
from tests.e2e import fault_kit as faults

pytestmark = pytest.mark.e2e

QUICKSTART = REPO_ROOT / "docs" / "quickstart.md"
SYSTEM, USER, RELEASE = "quickstart-system", "quickstart", "quickstart"
FULLNAME = f"{RELEASE}-mlops-operator"
# The lines the test cannot run here, and the local equivalent each stands for.
NOT_RUN = {
    "kind create cluster": "the local cluster, already up",
    "kind delete cluster": "the local cluster stays",
    "make images RUNTIME_IMAGE=$REGISTRY": "make images (step 1)",
    "docker push": "make images imports into the node's containerd (step 1)",
    "helm install quickstart charts/mlops-operator -n quickstart-system --wait --timeout 10m --set batteries.enabled=true --set 'batteries.namespaces={quickstart}' --set 'watchNamespaces={quickstart}' --set rbac.namespaced=true --set image.repository=$REGISTRY": "step 2's helm install",
}
MARKS = ("# [kind]", "# [Docker]", "# [registry]")
# Run before the test by `make test` (a prerequisite) and the e2e lock command; checked, not repeated.
BUILT_BEFORE = "make images"
IMAGES = ("localhost/mlops-operator:dev", "localhost/mlops-runtime:dev", "localhost/mlops-batteries:dev")


def marked(command: str) -> bool:
    return any(mark in command.splitlines()[0] for mark in MARKS)


def shell(command: str, cwd: pathlib.Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def shared_replicas() -> int | None:
    got = kubectl("-n", faults.OPERATOR_NS, "get", "deployment", faults.OPERATOR, "-o", "jsonpath={.spec.replicas}",
                  check=False)
    return int(got.stdout) if got.returncode == 0 and got.stdout.strip() else None


def remove_quickstart() -> None:
    """The doc's clean-up, tolerant of a half-done earlier run: the user's objects first (their finalizers
    need the operator, whose Role lives in that namespace), then the namespace, the release and its namespace."""
    if kubectl("get", "namespace", USER, check=False).returncode == 0:
        for kinds in ("mdep", "rp,mv"):
            kubectl("-n", USER, "delete", kinds, "--all", "--timeout=2m", check=False, timeout=150)
        if kubectl("delete", "namespace", USER, "--timeout=2m", check=False, timeout=150).returncode != 0:
            # No operator left to release the finalizers: drop them so the namespace can go.
            for kind in ("mdep", "mv", "rp", "fs"):
                names = kubectl("-n", USER, "get", kind, "-o", "name", check=False).stdout.split()
                for name in names:
                    kubectl("-n", USER, "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)
            kubectl("delete", "namespace", USER, "--timeout=2m", check=False, timeout=150)
    subprocess.run(["helm", "uninstall", RELEASE, "-n", SYSTEM, "--wait"], capture_output=True, timeout=300)
    kubectl("delete", "namespace", SYSTEM, "--timeout=3m", "--ignore-not-found", check=False, timeout=200)


@pytest.fixture()
def quickstart_cluster(kube_env, node_enabled):
    """The shared operator paused (it would act on the quickstart namespace too), no leftover of an earlier
    run; afterwards the quickstart removed and the shared operator back at its replicas."""
    if not node_enabled:
        pytest.fail("e2e needs the node: run `make cluster-up` (without MLOPS_NODE=0)")
    replicas = shared_replicas()
    if replicas:
        faults.scale_operator(0)  # waits until no pod of it is left
    remove_quickstart()
    try:
        yield
    finally:
        if os.environ.get("MLOPS_KEEP_NAMESPACES") != "1":
            remove_quickstart()
        if replicas:
            faults.restore_operator(replicas)


def in_cluster_minio():
    """A client of the batteries' MinIO, through its Service address, with the credentials the chart made."""
    secret = json.loads(kubectl("-n", SYSTEM, "get", "secret", f"{FULLNAME}-minio", "-o", "json").stdout)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    ip = kubectl("-n", SYSTEM, "get", "svc", f"{FULLNAME}-minio", "-o", "jsonpath={.spec.clusterIP}").stdout
    client = boto3.client("s3", endpoint_url=f"http://{ip}:9000", aws_access_key_id=data["MINIO_ROOT_USER"],
                          aws_secret_access_key=data["MINIO_ROOT_PASSWORD"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    return client, data


def run_commands(commands: list[str], scratch: pathlib.Path, background: list[subprocess.Popen],
                 outputs: dict[str, str], timings: dict[str, float], started: dict[str, float]) -> None:
    """Run ``commands`` in order in ``scratch`` (a directory that sees the chart and the docs; marked ones
    skipped, `make images` checked, `&` ones in the background, `kill %1` stops those), each expected to
    succeed; stdout and start time (epoch seconds) kept by first line, durations by the first 60 characters."""
    for command in commands:
        first = command.splitlines()[0]
        if marked(command):
            continue
        if first == BUILT_BEFORE:
            on_node = subprocess.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], capture_output=True,
                                     text=True).stdout.split()
            assert set(IMAGES) <= set(on_node), f"run `make images` first: {set(IMAGES) - set(on_node)} missing"
            continue
        if first.startswith("kill %1"):
            for proc in background:
                proc.terminate()
            continue
        if first.rstrip().endswith("&"):
            background.append(subprocess.Popen(["bash", "-c", first.rstrip()[:-1]], cwd=scratch,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            continue
        t0 = time.monotonic()
        started[first] = time.time()
        result = shell(command, scratch)
        timings[first[:60]] = round(time.monotonic() - t0, 1)
        assert result.returncode == 0, (f"{first}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
                                        f"operator:\n{operator_logs()}")
        outputs[first] = result.stdout


def out_of(outputs: dict[str, str], fragment: str) -> str:
    return next(out for cmd, out in outputs.items() if fragment in cmd)


def test_given_the_quickstart_when_its_commands_run_in_order_then_the_loop_closes_on_the_batteries_alone(
        quickstart_cluster, tmp_path, s3_env, s3_client, cluster_env):
    test_began = time.monotonic()
    text = QUICKSTART.read_text()
    commands = doc_kit.bash_commands(text)
    cleanup = doc_kit.bash_commands(text, lambda heading: heading.startswith("## 6.") or "registry" in heading)
    steps = commands[:len(commands) - len(cleanup)]
    assert steps + cleanup == commands and len(steps) > 20, commands
    skipped = [c for c in commands if marked(c)]
    # Every line the test does not run is one it knows, with its local equivalent.
    assert sorted(next(k for k in NOT_RUN if c.startswith(k)) for c in skipped) == sorted(NOT_RUN), skipped
    for shipped in ("charts", "docs"):  # the doc runs from the repository's root
        (tmp_path / shipped).symlink_to(REPO_ROOT / shipped)
    background: list[subprocess.Popen] = []
    outputs: dict[str, str] = {}
    timings: dict[str, float] = {}
    started: dict[str, float] = {}
    try:
        run_commands(steps, tmp_path, background, outputs, timings, started)
        check_the_story(outputs, started, s3_env, s3_client, cluster_env)
        run_commands(cleanup, tmp_path, background, outputs, timings, started)
    finally:
        for proc in background:
            proc.kill()
        print(f"quickstart steps (s): {json.dumps(timings)}")
    assert kubectl("get", "namespace", USER, check=False).returncode != 0
    print(f"quickstart e2e: {time.monotonic() - test_began:.0f} s")


def check_the_story(outputs: dict[str, str], started: dict[str, float], s3_env: dict[str, str], s3_client,
                    cluster_env: dict[str, str]) -> None:
    # Step 2: the operator talks to the batteries, not to the host-run services.
    operator_s3 = json.loads(kubectl("-n", SYSTEM, "get", "secret", f"{FULLNAME}-s3", "-o", "json").stdout)
    endpoint = base64.b64decode(operator_s3["data"]["S3_ENDPOINT_URL"]).decode()
    assert endpoint == f"http://{FULLNAME}-minio.{SYSTEM}.svc:9000" != s3_env["S3_ENDPOINT_URL"]
    deployment = json.loads(kubectl("-n", SYSTEM, "get", "deploy", FULLNAME, "-o", "json").stdout)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLOPS_PROMETHEUS_URL"] == f"http://{FULLNAME}-prometheus.{SYSTEM}.svc:9090"
    assert env["MLOPS_PROMETHEUS_URL"] != cluster_env["PROMETHEUS_URL"]

    # Step 3: the version was committed to the in-cluster MinIO, and nothing of it to the host's.
    minio, creds = in_cluster_minio()
    prefix = f"models/{USER}/breast-cancer/bc-v1/"
    listed = minio.list_objects_v2(Bucket=creds["S3_BUCKET"], Prefix=prefix)
    assert any(o["Key"].endswith("manifest.json") for o in listed.get("Contents", [])), listed
    host = s3_client.list_objects_v2(Bucket=s3_env["S3_BUCKET"], Prefix=prefix)
    assert host.get("KeyCount", 0) == 0, f"bc-v1 reached the host MinIO: {host.get('Contents')}"

    # Step 4: promoted by analysis the in-cluster Prometheus answered, on traffic it scraped from both versions.
    mdep = json.loads(kubectl("-n", USER, "get", "mdep", "bc", "-o", "json").stdout)["status"]
    assert mdep["stableVersion"] == "bc-v2", mdep
    promoted = [h for h in mdep.get("history", []) if h.get("version") == "bc-v2" and h.get("event") == "promoted"]
    assert promoted, mdep.get("history")
    # What step 4 printed right after the promotion (a later rollout, e.g. the retrained version's, resets it).
    analysis = json.loads(out_of(outputs, "jsonpath='{.status.analysis}'"))
    measured = [a for a in analysis if a.get("value") is not None and a.get("passed")]
    assert {a["metric"] for a in measured} >= {"error-rate", "latency"}, analysis
    query = json.loads(out_of(outputs, "prometheus:http/proxy"))
    versions = {r["metric"].get("version") for r in query["data"]["result"]}
    assert {"bc-v1", "bc-v2"} <= versions, query

    # Step 5: the retrain came from the in-cluster Alertmanager's alert; the host's never saw one for us.
    # Step 4's traffic looked like the training data, so every drift alert started after the drifted traffic
    # did (a repeated single row would have fired one during the canary, and the policy would retrain on it).
    alerts = json.loads(out_of(outputs, "alertmanager:http/proxy"))
    ours = [a for a in alerts if a["labels"].get("namespace") == USER and a["labels"].get("model") == "breast-cancer"]
    assert ours, alerts
    drifted_from = next(t for cmd, t in started.items() if "breast-cancer-drifted.json" in cmd)
    assert all(datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")).timestamp() > drifted_from - 1
               for a in ours), (drifted_from, ours)
    assert {a["labels"].get("version") for a in ours} == {"bc-v2"}, ours
    host_alerts = httpx.get(f"{cluster_env['ALERTMANAGER_URL']}/api/v2/alerts",
                            params={"filter": f'namespace="{USER}"'}, timeout=10).json()
    assert host_alerts == [], host_alerts
    triggered = json.loads(out_of(outputs, "lastTriggered"))
    assert triggered["source"] == "alert" and "MLOpsFeatureDriftHigh" in triggered["detail"], triggered
    assert "bc-retrain" in outputs[f"kubectl -n {USER} get mv -l mlops.dev/retrainpolicy=bc-retrain"]


def operator_logs(tail: int = 40) -> str:
    return kubectl("-n", SYSTEM, "logs", f"deployment/{FULLNAME}", f"--tail={tail}", "--all-containers",
                   check=False).stdout
