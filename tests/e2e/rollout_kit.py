"""What the rollout e2e tests (and the demo's loop step) share: trained versions, ModelDeployment specs, the
entry URL, steady load, and load that labels its own predictions.

The "bad" version used by rollback and shadow tests is a real artifact, not an injected fault: a random
forest of 600 trees predicts one row in ~60 ms where the 30-tree stable answers in ~2 ms, so a latency
check fails on it for the reason it would fail in production.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Self

import httpx
from sklearn.datasets import load_breast_cancer

from mlops_operator.builders.serving import ROUTER_CONFIG_KEY, router_name
from tests.conftest import REPO_ROOT, kubectl
from tests.e2e.conftest import operator_logs, wait_for_phase

MODEL = "breast-cancer"
FAST, SLOW = 30, 600  # trees: ~2 ms vs 25-60 ms per prediction on these machines (idle vs busy)
X, Y = load_breast_cancer(return_X_y=True)
ROWS: list[list[float]] = X[:20].tolist()


def unique_names(*suffixes: str) -> list[str]:
    """Names unique to this run: a version re-applied with another spec would be refused (versions are immutable)."""
    run = uuid.uuid4().hex[:5]
    return [f"bc-{run}-{s}" for s in suffixes]


def modelversion(name: str, n_estimators: int, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"model": MODEL, "training": {
                "dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.ensemble.RandomForestClassifier",
                "hyperparameters": {"n_estimators": n_estimators, "random_state": 1},
                "split": {"testFraction": 0.2, "seed": 42, "stratify": True}, "metrics": ["accuracy", "roc_auc"]},
                "gates": {"minMetrics": {"accuracy": 0.85}}}}


def train(ns: str, trees: dict[str, int], labels: dict[str, dict[str, str]] | None = None) -> None:
    """Apply every ModelVersion at once (the Jobs run side by side), then wait for all to be Ready."""
    for name, n in trees.items():
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(modelversion(name, n, (labels or {}).get(name))))
    for name in trees:
        phase = wait_for_phase(ns, "mv", name, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"]
        assert phase == "Ready", f"{name}: {phase}"


ERROR_RATE = {"name": "error-rate", "builtin": "errorRate", "max": 0.05}


def analysis(*metrics: dict, interval: str = "10s", failure_limit: int = 1) -> dict:
    return {"interval": interval, "failureLimit": failure_limit, "minSamples": 5, "onNoData": "hold",
            "metrics": list(metrics)}


def deployment(version: str, strategy: dict, analysis_spec: dict, name: str = "bc", compiled: str = "off") -> dict:
    """``compiled`` is ``serving.compiledModel``: off by default, because the slow version is slow only on
    scikit-learn (compiled to ONNX, 600 trees answer in microseconds); tests/e2e/test_compiled_e2e.py turns it on."""
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": MODEL, "version": version, "strategy": strategy, "analysis": analysis_spec,
                     "serving": {"replicas": 1, "compiledModel": compiled}, "traffic": {"router": "builtin"},
                     "progressDeadline": "5m"}}


def get(ns: str, kind: str, name: str) -> dict | None:
    got = kubectl("-n", ns, "get", kind, name, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def status(ns: str, name: str = "bc") -> dict:
    return (get(ns, "mdep", name) or {}).get("status") or {}


def patch_spec(ns: str, spec: dict, name: str = "bc") -> None:
    kubectl("-n", ns, "patch", "mdep", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def epoch(stamp: str) -> float:
    """An RFC 3339 timestamp from status as seconds since the epoch (to compare with time.time())."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def router_document(ns: str, name: str = "bc") -> dict:
    """The builtin router's durable configuration (its ConfigMap), as the routers read it."""
    cm = get(ns, "cm", router_name(name))
    assert cm is not None, "the router ConfigMap is missing"
    return json.loads(cm["data"][ROUTER_CONFIG_KEY])


def annotate(ns: str, action: str, name: str = "bc") -> str:
    """A manual request (promote / abort / retry): the value is a nonce, returned (``status.handledRequests``
    records it once handled)."""
    nonce = uuid.uuid4().hex[:8]
    kubectl("-n", ns, "annotate", "mdep", name, "--overwrite", f"mlops.dev/{action}={nonce}")
    return nonce


def stage(ns: str, version: str) -> str | None:
    return ((get(ns, "mv", version) or {}).get("status") or {}).get("stage")


def deploy_first(ns: str, md: dict, first: str | None = None) -> str:
    """Apply ``md``, wait until its first version (``first``, else ``spec.version``) serves, return the entry
    URL (Service <name>:8080)."""
    name = md["metadata"]["name"]
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(md))
    st = wait_for_phase(ns, "mdep", name, {"Succeeded", "Failed", "Degraded"}, 300)["status"]
    assert st["phase"] == "Succeeded" and st["stableVersion"] == (first or md["spec"]["version"]), st
    svc = get(ns, "svc", name)
    assert svc and svc["spec"]["ports"][0]["port"] == 8080, svc
    base = service_url(ns, name)
    # Succeeded means the entry point answers (a Ready router pod); allow kube-proxy a moment to program it.
    wait_ready(base, timeout=5)
    return base


def service_url(ns: str, service: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (svc := get(ns, "svc", service)) is None and time.monotonic() < deadline:
        time.sleep(1)
    assert svc is not None, f"no Service {service} in {ns} after {timeout}s"
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def wait_ready(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{base} not ready in {timeout}s")


def watch(ns: str, until: Callable[[dict], bool], timeout: float, name: str = "bc",
          seen: Callable[[dict], None] | None = None) -> dict:
    """Poll status every second until ``until(status)``; ``seen`` sees every status on the way."""
    deadline, st = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        st = status(ns, name)
        if seen:
            seen(st)
        if until(st):
            return st
        time.sleep(1)
    raise AssertionError(f"mdep/{name} never reached the expected state in {timeout}s: {st}\n"
                         f"operator:\n{operator_logs()}")


@dataclass
class Sample:
    at: float          # time.time() when sent
    seconds: float     # client-side latency
    code: int          # HTTP status (0: no answer)
    version: str | None


class Background:
    """``with`` runs ``_run`` on a daemon thread; ``_run`` loops until ``_stop`` is set, on leaving the block."""

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class Load(Background):
    """Steady V2 requests to ``url``'s model, one at a time with ``pause`` between, from the host
    (kube-proxy routes ClusterIPs here too). Every answer is kept with the version that gave it."""

    base: str
    pause: float = 0.02
    samples: list[Sample] = field(default_factory=list)

    def _run(self) -> None:
        url, i = f"{self.base}/v2/models/{MODEL}/infer", 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                row = ROWS[i % len(ROWS)]
                body = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
                at, start = time.time(), time.perf_counter()
                try:
                    response = client.post(url, json=body)
                    code = response.status_code
                    version = response.json().get("model_version") if code == 200 else None
                except (httpx.HTTPError, ValueError):
                    code, version = 0, None
                self.samples.append(Sample(at, time.perf_counter() - start, code, version))
                i += 1
                time.sleep(self.pause)

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.code != 200]

    def wait_answers(self, since: float = 0.0, count: int = 20, timeout: float = 60) -> None:
        """Until ``count`` successful answers were sent at or after ``since`` (what a check of the answers since
        then needs), instead of a fixed sleep."""
        deadline = time.monotonic() + timeout
        while sum(1 for s in list(self.samples) if s.at >= since and s.code == 200) < count:
            assert time.monotonic() < deadline, f"fewer than {count} answers since {since} in {timeout}s"
            time.sleep(0.2)

    def versions(self, since: float = 0.0) -> set[str | None]:
        """Versions that answered successfully since ``since``."""
        return {s.version for s in self.samples if s.at >= since and s.code == 200}

    def median_seconds(self, since: float, until: float) -> float:
        window = [s.seconds for s in self.samples if since <= s.at <= until and s.code == 200]
        assert len(window) >= 10, f"only {len(window)} answers between {since} and {until}"
        return statistics.median(window)


class LabelledLoad(Background):
    """Predict 5 rows, then send their true labels by the answer's id, over and over, through ``base``.
    Keeps which version answered each prediction and how the feedback was answered. ``rows``/``labels``
    default to the breast cancer data; ``wrong`` (classifiers) sends the opposite labels."""

    def __init__(self, base: str, model: str = MODEL, rows: Any = None, labels: Any = None):
        self.base, self.model = base, model
        self.rows, self.labels = (X, Y) if rows is None else (rows, labels)
        self.answers: list[tuple[str | None, int]] = []  # (version that predicted, feedback status)
        self.wrong = False  # set to send the opposite labels (a model that has gone bad, as its users see it)

    def _run(self) -> None:
        i = 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                start = (i * 5) % 100
                rows, labels = self.rows[start:start + 5].tolist(), self.labels[start:start + 5].tolist()
                if self.wrong:
                    labels = [1 - y for y in labels]
                try:
                    predicted = client.post(f"{self.base}/v2/models/{self.model}/infer", json={"inputs": [
                        {"name": "input-0", "shape": [5, len(rows[0])], "datatype": "FP64", "data": rows}]})
                    if predicted.status_code == 200:
                        doc = predicted.json()
                        fed = client.post(f"{self.base}/v2/models/{self.model}/feedback",
                                          json={"id": doc["id"], "labels": labels})
                        self.answers.append((doc.get("model_version"), fed.status_code))
                except httpx.HTTPError:
                    self.answers.append((None, 0))
                i += 1
                time.sleep(0.05)


def stop_component(name: str) -> None:
    """Stop one host component of the local cluster (``tests/infra/lib.sh`` ``stop``: TERM, then KILL)."""
    subprocess.run(["bash", "-c", f'source "{REPO_ROOT}/tests/infra/lib.sh" && stop {name}'], check=True, timeout=60)


def restart_cluster_components() -> None:
    """``make cluster-up`` starts exactly what is not running (idempotent, seconds when warm)."""
    result = subprocess.run(["bash", str(REPO_ROOT / "tests/infra/cluster-up.sh")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"cluster-up failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
