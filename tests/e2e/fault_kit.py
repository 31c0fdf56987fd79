"""What the fault e2e tests share: the installed operator (its pods, the Lease, scaling it down and back),
a RetrainPolicy that retrains into a channel nothing tracks, and alerts fired through the real Alertmanager."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import OPERATOR_REPLICAS, wait_until

OPERATOR_NS, OPERATOR, LEASE = "mlops-system", "mlops-operator", "mlops-operator"
POD_SELECTOR = "app.kubernetes.io/name=mlops-operator"


def lease() -> dict:
    return json.loads(kubectl("-n", OPERATOR_NS, "get", "lease", LEASE, "-o", "json").stdout)["spec"]


def operator_pods() -> list[dict]:
    return json.loads(kubectl("-n", OPERATOR_NS, "get", "pods", "-l", POD_SELECTOR, "-o", "json").stdout)["items"]


def restarts() -> dict[str, int]:
    """Container restarts per operator pod: a fault must never become a crash."""
    return {p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in operator_pods()}


def wait_for_replicas(timeout: float = 120) -> None:
    """Leader and standby up, and no pod of an earlier rollout still shutting down (handing the Lease over)."""
    def ready() -> bool:
        pods = operator_pods()
        up = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("containerStatuses")
              and all(c.get("ready") for c in p["status"]["containerStatuses"])]
        return len(up) == len(pods) == OPERATOR_REPLICAS

    wait_until(f"{OPERATOR_REPLICAS} ready operator pods", ready, timeout)


def leader_pod() -> str:
    """The pod holding the Lease (identity = <pod>_<suffix>), once it also carries the leader label."""
    def labelled_holder() -> str | None:
        holder = (lease().get("holderIdentity") or "").rsplit("_", 1)[0]
        labelled = [p["metadata"]["name"] for p in operator_pods()
                    if p["metadata"].get("labels", {}).get("mlops.dev/leader") == "true"
                    and not p["metadata"].get("deletionTimestamp")]
        return holder if holder and labelled == [holder] else None

    return wait_until("a single labelled leader", labelled_holder, 120, every=0.5)


def kill_process(pod: str) -> None:
    """SIGKILL the pod's operator process on the node (containerd, the task id is the container id): a
    crash, as the OOM killer or a node fault does it. No clean shutdown, so no Lease release; the kubelet
    restarts the container in the same pod, a new process with a new identity that stands by."""
    got = json.loads(kubectl("-n", OPERATOR_NS, "get", "pod", pod, "-o", "json").stdout)
    container = got["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    subprocess.run(["ctr", "-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container], check=True,
                   capture_output=True, timeout=30)


def wait_restarted(pod: str, restarts_before: int, timeout: float = 120) -> None:
    """The kubelet restarted the killed pod's container and it is ready again (as a standby)."""
    def back() -> bool:
        got = json.loads(kubectl("-n", OPERATOR_NS, "get", "pod", pod, "-o", "json").stdout)
        statuses = got["status"].get("containerStatuses") or []
        return bool(statuses) and statuses[0].get("restartCount", 0) > restarts_before and statuses[0].get("ready")

    wait_until(f"{pod} restarted and ready", back, timeout)


def scale_operator(replicas: int) -> None:
    """Scale the installed operator; at 0, wait until no pod is left (nothing reconciles, nothing answers)."""
    kubectl("-n", OPERATOR_NS, "scale", "deployment", OPERATOR, f"--replicas={replicas}")
    if replicas == 0:
        kubectl("-n", OPERATOR_NS, "wait", "pods", "-l", POD_SELECTOR, "--for=delete", "--timeout=120s", timeout=150)


def restore_operator(replicas: int = OPERATOR_REPLICAS) -> None:
    scale_operator(replicas)
    kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{OPERATOR}", "--timeout=180s", timeout=200)


TRAINING = {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.ensemble.RandomForestClassifier",
            "hyperparameters": {"n_estimators": 5, "random_state": 3},
            "split": {"testFraction": 0.2, "seed": 42, "stratify": True}, "metrics": ["accuracy"]}


def retrain_policy(name: str, alertname: str, run: str) -> dict:
    """Retrains into a channel nothing tracks on ``alertname`` with this run's label: the retrain is
    counted, never rolled out mid-test."""
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": name},
            "spec": {"model": kit.MODEL, "cooldown": "10m", "maxConcurrent": 1,
                     "triggers": {"alerts": [{"matchLabels": {"alertname": alertname, "e2e_run": run}}]},
                     "template": {"labels": {"channel": f"fault-{run}"}, "training": TRAINING,
                                  "gates": {"minMetrics": {"accuracy": 0.5}}}}}


def fire_alert(cluster_env: dict, labels: dict[str, str]) -> None:
    """Through the real Alertmanager, which posts to the operator Service and re-sends until a 2xx."""
    now = datetime.now(UTC)
    alert = {"labels": {"model": kit.MODEL, **labels}, "annotations": {"summary": "fired by a fault test"},
             "startsAt": now.isoformat().replace("+00:00", "Z"),
             "endsAt": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")}
    r = httpx.post(f"{cluster_env['ALERTMANAGER_URL']}/api/v2/alerts", json=[alert], timeout=10)
    assert r.status_code == 200, r.text


def retrained_versions(ns: str, policy: str) -> list[str]:
    items = json.loads(kubectl("-n", ns, "get", "mv", "-l", f"mlops.dev/retrainpolicy={policy}", "-o",
                               "json").stdout)["items"]
    return [m["metadata"]["name"] for m in items]


def policy_status(ns: str, policy: str) -> dict:
    return (kit.get(ns, "rp", policy) or {}).get("status") or {}
