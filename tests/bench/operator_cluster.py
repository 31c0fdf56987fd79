"""Cluster plumbing of the `operator` benchmark: the installed operator, a throwaway `bench-*` namespace where no
pod can run, watches that time when objects appear, and the request counters of the apiserver and the operator.

Requests per reconcile come from the kube-apiserver's own `apiserver_request_total` (every client, every verb,
so Kopf's progress patches and events count too), read before and after a phase; the requests this benchmark
made itself are counted here and subtracted. Reconcile passes come from the operator's
`mlops_operator_reconciles_total`, read through the apiserver's pod proxy like its RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.bench.common import Unavailable

GROUP, VERSION = "mlops.dev", "v1alpha1"
OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT = "mlops-system", "mlops-operator"
OPERATOR_SELECTOR = "app.kubernetes.io/name=mlops-operator,app.kubernetes.io/component=operator"
OPERATOR_METRICS_PORT = 8081
NO_PODS = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
RequestKey = tuple[str, str]  # (verb, resource) as the apiserver counts them


def kubectl(*args: str, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
    try:
        proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"kubectl {args[0]}: {exc}") from None
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def samples(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


class Cluster:
    """The local cluster through the Kubernetes client (KUBECONFIG from .local/env), counting our own requests."""

    def __init__(self) -> None:
        if not os.environ.get("KUBECONFIG"):
            raise Unavailable("no local cluster (KUBECONFIG unset: run `make cluster-up`, then `make bench`)")
        from kubernetes import client, config

        config.load_kube_config(os.environ["KUBECONFIG"])
        self.api = client.CustomObjectsApi()
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.mine: Counter[RequestKey] = Counter()
        self._lock = threading.Lock()
        try:
            self.apps.read_namespaced_deployment(OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, _request_timeout=10)
        except Exception as exc:  # noqa: BLE001  (apiserver down or operator not installed: both mean unavailable)
            raise Unavailable(f"no installed operator {OPERATOR_NAMESPACE}/{OPERATOR_DEPLOYMENT} "
                              f"(`make install` or an e2e run installs it): {str(exc).splitlines()[0][:120]}") from None

    def count(self, verb: str, resource: str, n: int = 1) -> None:
        with self._lock:
            self.mine[(verb, resource)] += n

    # ---------------------------------------------------------------------------------- objects

    def create(self, namespace: str, plural: str, body: Mapping[str, Any], group: str = GROUP,
               version: str = VERSION) -> None:
        self.count("POST", plural)
        self.api.create_namespaced_custom_object(group, version, namespace, plural, dict(body))

    def create_many(self, namespace: str, plural: str, bodies: list[dict[str, Any]], threads: int = 8) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda b: self.create(namespace, plural, b), bodies))

    def namespace(self, prefix: str = "bench-op") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
        kubectl("-n", name, "apply", "-f", "-", input=json.dumps(NO_PODS))
        return name

    def delete_namespace(self, name: str, timeout: float = 600) -> None:
        kubectl("delete", "namespace", name, "--wait=true", f"--timeout={int(timeout)}s", timeout=timeout + 30,
                check=False)

    # ---------------------------------------------------------------------------------- counters

    def apiserver_requests(self) -> Counter[RequestKey]:
        """Every API request the apiserver served so far, by (verb, resource); proxy and non-resource excluded."""
        out: Counter[RequestKey] = Counter()
        # the apiserver's page is megabytes: parse only the one counter's lines
        lines = [line for line in kubectl("get", "--raw", "/metrics").splitlines()
                 if line.startswith("apiserver_request_total{")]
        text = "# TYPE apiserver_request_total counter\n" + "\n".join(lines) + "\n"
        for labels, value in samples(text, "apiserver_request_total"):
            if labels.get("resource") and labels.get("subresource") != "proxy":
                out[(labels["verb"], labels["resource"])] += value
        return out

    def operator_pod(self) -> str:
        pods = self.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR).items
        running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
                   and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        leaders = [p for p in running if (p.metadata.labels or {}).get("mlops.dev/leader") == "true"]
        chosen = (leaders or running)
        if not chosen:
            raise RuntimeError("no Ready operator pod")
        return chosen[0].metadata.name

    def operator_metrics(self) -> str:
        pod = self.operator_pod()
        return kubectl("get", "--raw", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}:{OPERATOR_METRICS_PORT}"
                                       "/proxy/metrics")

    def operator_restarts(self) -> dict[str, Any]:
        """Container restarts of the operator pod and why the last one ended (OOMKilled, Error ...)."""
        pod = self.core.read_namespaced_pod(self.operator_pod(), OPERATOR_NAMESPACE)
        status = next(iter(pod.status.container_statuses or []), None)
        last = status.last_state.terminated if status and status.last_state else None
        return {"pod": pod.metadata.name, "restarts": status.restart_count if status else 0,
                "last_reason": last.reason if last else None}

    def operator_image(self) -> str:
        pod = self.core.read_namespaced_pod(self.operator_pod(), OPERATOR_NAMESPACE)
        return next((s.image_id for s in pod.status.container_statuses or []), "")

    # ---------------------------------------------------------------------------------- the operator

    def operator_replicas(self) -> int:
        return self.apps.read_namespaced_deployment(OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE).spec.replicas or 0

    def restart_operator(self, timeout: float = 180) -> None:
        """One fresh replica: scaled to zero until no pod is left, then to one (the image loaded now, an RSS
        that starts from nothing)."""
        self.scale_operator(0)
        deadline = time.monotonic() + timeout
        while self.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR).items:
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator pods still there {timeout:.0f}s after scaling to zero")
            time.sleep(1)
        self.scale_operator(1, timeout)

    def scale_operator(self, replicas: int, timeout: float = 180) -> None:
        self.apps.patch_namespaced_deployment_scale(OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE,
                                                    {"spec": {"replicas": replicas}})
        if replicas == 0:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                metrics = self.operator_metrics()
                if "mlops_operator" in metrics:
                    return
            except Exception:  # noqa: BLE001  (starting: no pod, not Ready, or not leading yet)
                pass
            time.sleep(1)
        raise RuntimeError(f"the operator did not answer /metrics within {timeout:.0f}s")


def operator_counts(metrics: str) -> tuple[Counter[str], float, float]:
    """(reconcile passes by kind, RSS in MiB, CPU seconds) from the operator's /metrics text."""
    passes: Counter[str] = Counter()
    for labels, value in samples(metrics, "mlops_operator_reconciles_total"):
        passes[labels.get("kind", "")] += value
    rss = next((v for _, v in samples(metrics, "process_resident_memory_bytes")), 0.0) / 2**20
    cpu = next((v for _, v in samples(metrics, "process_cpu_seconds_total")), 0.0)
    return passes, rss, cpu


class Seen:
    """When (monotonic seconds) a watch first saw each object of ``plural`` in ``namespace`` pass ``test``.

    One thread per watch; a 410 (history gone) re-lists. ``wait`` polls the recorded set, never the cluster.
    """

    def __init__(self, cluster: Cluster, namespace: str, plural: str, test: Callable[[dict[str, Any]], bool],
                 group: str = GROUP, version: str = VERSION) -> None:
        self.cluster, self.namespace, self.plural, self.test = cluster, namespace, plural, test
        self.group, self.version = group, version
        self.at: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"watch of {plural} did not start")

    def _note(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        if name not in self.at and self.test(obj):
            self.at[name] = now

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        api = self.cluster.api
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    self.cluster.count("LIST", self.plural)
                    listed = api.list_namespaced_custom_object(self.group, self.version, self.namespace, self.plural)
                    for obj in listed["items"]:
                        self._note(obj, time.monotonic())
                    version = listed["metadata"]["resourceVersion"]
                    self._ready.set()
                self.cluster.count("WATCH", self.plural)
                stream = watch.Watch().stream(api.list_namespaced_custom_object, self.group, self.version,
                                              self.namespace, self.plural, resource_version=version,
                                              timeout_seconds=30, allow_watch_bookmarks=True)
                for event in stream:
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._note(obj, time.monotonic())
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                else:
                    time.sleep(0.5)
            except Exception:  # noqa: BLE001  (a dropped stream: resume from the last version seen)
                time.sleep(0.5)

    def wait(self, names: Iterable[str], timeout: float) -> bool:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= self.at.keys():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
