"""`operator`: the installed operator at 1,000+ objects on the local cluster.

Everything happens in one throwaway namespace `bench-op-*` with a ResourceQuota of zero pods: Jobs and serving
Deployments are created (that is what is timed) but nothing is scheduled. The operator is the one `make install`
or the e2e fixture installed; it is scaled to one replica for the run and back to what it was afterwards, and
the namespace and the artifact are deleted at the end.

Phases, in order (each with the API requests per reconcile pass it cost):
1. floor: a bare create of a Job, timed from the request until a watch sees it (the same client and watch
   the next phase uses), and `kubectl create` of a Job for reference;
2. CR -> Job: ModelVersions that train, created at 1/s, timed until a watch sees their Job;
3. a burst of 1,000 ModelVersions registering one committed artifact, timed until all are Ready;
4. 200 ModelDeployments: API requests per pass, and how many of them list ModelVersions;
5. alert webhook -> retrain Job: one alert per RetrainPolicy POSTed to /alerts, timed until the Job exists;
6. 4,000 more registering ModelVersions (5,000 objects): the operator's RSS at 0 / 1k / 5k objects.
Bars are printed, never asserted. `MLOPS_BENCH_OPERATOR_QUICK=1` stops after phase 5 (1,000 objects): what
to run against an operator whose every ModelDeployment pass lists the namespace, which at 5,000 versions
would load the shared apiserver for minutes.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
import urllib.request
import uuid
from collections import Counter
from typing import Any, Callable

from tests.bench.common import Unavailable, bar_line, fmt, ratio, table, times, write_results
from tests.bench.operator_cluster import GROUP, OPERATOR_NAMESPACE, Cluster, RequestKey, Seen, kubectl, operator_counts

from mlops_operator.builders.job import training_job_name
from mlops_operator.builders.retrain import model_version_name
from mlops_operator.providers.storage import ArtifactStore, sha256_hex

TRAIN = {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression"}
MODEL_BYTES = b"\x80\x05bench-model" * 64
RESTRICTED = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}


def mv(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "bench", **spec}}


def bare_job(name: str) -> dict[str, Any]:
    container = {"name": "c", "image": "localhost/mlops-runtime:dev", "command": ["true"],
                 "securityContext": CONTAINER_SECURITY}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "securityContext": RESTRICTED,
                                                               "containers": [container]}}}}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def pcts(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_s": percentile(values, 0.5), "p99_s": percentile(values, 0.99),
            "max_s": max(values) if values else None}


class Meter:
    """API requests (apiserver, minus our own) and reconcile passes (operator) between ``start`` and ``stop``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def start(self) -> "Meter":
        self.api0, self.mine0 = self.cluster.apiserver_requests(), Counter(self.cluster.mine)
        self.passes0, _, self.cpu0 = operator_counts(self.cluster.operator_metrics())
        return self

    def stop(self, kind: str) -> dict[str, Any]:
        api, mine = self.cluster.apiserver_requests(), Counter(self.cluster.mine)
        passes, rss, cpu = operator_counts(self.cluster.operator_metrics())
        theirs: Counter[RequestKey] = Counter()
        for key in api:
            theirs[key] = max(0.0, api[key] - self.api0.get(key, 0.0) - (mine[key] - self.mine0.get(key, 0)))
        n = passes[kind] - self.passes0[kind]
        if n < 0:  # the operator restarted in between: its counters began again, no per-pass figure
            return {"kind": kind, "passes": None, "operator_restarted": True, "rss_mib": rss}
        per = lambda value: value / n if n else None  # noqa: E731
        mlops = {f"{verb} {res}": per(v) for (verb, res), v in theirs.most_common() if v and res in PLURALS}
        return {"kind": kind, "passes": n, "requests_per_pass": per(sum(theirs.values())),
                "mlops_requests_per_pass": mlops,
                "list_modelversions_per_pass": per(theirs[("LIST", "modelversions")]),
                "list_modelversions": theirs[("LIST", "modelversions")], "requests": sum(theirs.values()),
                "top_requests": {f"{verb} {res}": v for (verb, res), v in theirs.most_common(8) if v},
                "operator_cpu_s": cpu - self.cpu0, "rss_mib": rss}


PLURALS = {"modelversions", "modeldeployments", "retrainpolicies", "jobs", "deployments", "services", "configmaps",
           "secrets", "events"}


def floor(cluster: Cluster, ns: str, jobs: Seen, n: int) -> dict[str, Any]:
    latencies, kubectl_s = [], []
    for i in range(n):
        name = f"bench-floor-{i}"
        t0 = time.monotonic()
        cluster.create(ns, "jobs", bare_job(name), group="batch", version="v1")
        if jobs.wait([name], 30):
            latencies.append(jobs.at[name] - t0)
    for i in range(5):
        t0 = time.monotonic()
        kubectl("-n", ns, "create", "-f", "-", input=json.dumps(bare_job(f"bench-kubectl-{i}")))
        kubectl_s.append(time.monotonic() - t0)
    return {**pcts(latencies), "kubectl_create_p50_s": statistics.median(kubectl_s)}


def cr_to_job(cluster: Cluster, ns: str, jobs: Seen, n: int) -> dict[str, Any]:
    meter, started = Meter(cluster).start(), {}
    for i in range(n):
        name = f"bench-train-{i}"
        t0 = started[name] = time.monotonic()
        cluster.create(ns, "modelversions", mv(name, training=TRAIN))
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))  # a fixed rate of 1/s, whatever the latency
    jobs.wait([training_job_name(name) for name in started], 60)
    latencies = [jobs.at[training_job_name(name)] - t0 for name, t0 in started.items()
                 if training_job_name(name) in jobs.at]
    return {**pcts(latencies), "missing": n - len(latencies), "api": meter.stop("ModelVersion")}


def burst(cluster: Cluster, ns: str, ready: Seen, names: list[str], artifact: dict[str, str],
          timeout: float) -> dict[str, Any]:
    meter = Meter(cluster).start()
    t0 = time.monotonic()
    cluster.create_many(ns, "modelversions", [mv(name, artifact=artifact) for name in names])
    created = time.monotonic() - t0
    done = ready.wait(names, timeout)
    last = max((ready.at[n] for n in names if n in ready.at), default=t0) - t0
    return {"objects": len(names), "create_s": created, "all_ready_s": last if done else None,
            "ready": sum(n in ready.at for n in names), "api": meter.stop("ModelVersion")}


def deployments(cluster: Cluster, ns: str, n: int, window: float) -> dict[str, Any]:
    names = [f"bench-md-{i:03d}" for i in range(n)]
    first = Seen(cluster, ns, "modeldeployments", lambda o: bool((o.get("status") or {}).get("phase")))
    try:
        cluster.create_many(ns, "modeldeployments", [{
            "apiVersion": f"{GROUP}/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": "bench-md", "track": {"policy": "latestReady"}, "serving": {"replicas": 1}}}
            for name in names])
        first.wait(names, 180)
    finally:
        first.stop()
    meter = Meter(cluster).start()
    time.sleep(window)  # a measurement window, not a wait for a condition: passes run on their own timers
    return {"deployments": n, "reconciled": len(first.at), "window_s": window, "api": meter.stop("ModelDeployment")}


def webhook(cluster: Cluster, ns: str, jobs: Seen, n: int) -> dict[str, Any]:
    policies = [f"bench-rp-{i}" for i in range(n)]
    seen = Seen(cluster, ns, "retrainpolicies", lambda o: bool(o.get("status")))
    try:
        cluster.create_many(ns, "retrainpolicies", [{
            "apiVersion": f"{GROUP}/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": p},
            "spec": {"model": "bench", "template": {"training": TRAIN}, "cooldown": "1h",
                     "triggers": {"alerts": [{"matchLabels": {"alertname": "BenchRetrain", "policy": p}}]}}}
            for p in policies])
        seen.wait(policies, 60)
    finally:
        seen.stop()
    url, token = os.environ.get("ALERT_WEBHOOK_URL"), alert_token()
    if not url or not token:
        return {"unavailable": "ALERT_WEBHOOK_URL or the operator's alert token is missing"}
    meter, started, refused = Meter(cluster).start(), {}, []
    for p in policies:
        alert = {"status": "firing", "labels": {"alertname": "BenchRetrain", "policy": p, "namespace": ns},
                 "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "fingerprint": uuid.uuid4().hex}
        body = json.dumps({"version": "4", "status": "firing", "receiver": "bench", "alerts": [alert]}).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        t0 = started[p] = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except OSError as exc:  # HTTPError included: reported, the other alerts still go
            refused.append(f"{p}: {exc}")
            del started[p]
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
    job = {p: training_job_name(model_version_name(p, 1)) for p in policies}
    jobs.wait(job.values(), 90)
    latencies = [jobs.at[job[p]] - t0 for p, t0 in started.items() if job[p] in jobs.at]
    return {**pcts(latencies), "missing": n - len(latencies), "refused": refused, "api": meter.stop("RetrainPolicy")}


def alert_token() -> str | None:
    out = kubectl("-n", OPERATOR_NAMESPACE, "get", "secret", "mlops-operator-alert-token", "-o",
                  "jsonpath={.data.token}", check=False)
    return base64.b64decode(out).decode().strip() if out else None


def rss_now(cluster: Cluster, settle: float = 10.0) -> float:
    time.sleep(settle)  # let the passes the last phase started finish before reading memory
    return operator_counts(cluster.operator_metrics())[1]


def phase(out: dict[str, Any], key: str, fn: Callable[[], Any], say: Callable[[Any], str]) -> None:
    """Run one phase into ``out[key]``; a phase that fails is recorded and the next one still runs."""
    try:
        out[key] = fn()
        print(f"  {say(out[key])}", flush=True)
    except Exception as exc:  # noqa: BLE001  (reported in the table and the JSON, never fatal to the run)
        out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        print(f"  {key}: failed: {out[key]['error']}", flush=True)


def measure(cluster: Cluster, ns: str, artifact: dict[str, str], quick: bool, out: dict[str, Any]) -> None:
    out.update({"operator_image": cluster.operator_image(), "namespace": ns, "quick": quick,
                "operator_at_start": cluster.operator_restarts()})
    out["rss_mib"] = {"0": rss_now(cluster)}
    jobs = Seen(cluster, ns, "jobs", lambda o: True, group="batch", version="v1")
    ready = Seen(cluster, ns, "modelversions", lambda o: (o.get("status") or {}).get("phase") == "Ready")
    try:
        phase(out, "floor", lambda: floor(cluster, ns, jobs, 20), lambda r: f"floor: create -> watched p50 {fmt(r['p50_s'])} s")
        phase(out, "cr_to_job", lambda: cr_to_job(cluster, ns, jobs, 20), lambda r: f"CR -> Job: p50 {fmt(r['p50_s'])} s")
        phase(out, "burst_1k", lambda: burst(cluster, ns, ready, [f"bench-reg-{i:04d}" for i in range(1000)], artifact, 300),
              lambda r: f"burst of 1,000: all Ready in {fmt(r['all_ready_s'])} s")
        out["rss_mib"]["1k"] = rss_now(cluster)
        phase(out, "deployments", lambda: deployments(cluster, ns, 200, 30.0),
              lambda r: f"200 ModelDeployments: {r['reconciled']} reconciled, {fmt(r['api']['passes'])} passes in the window")
        phase(out, "webhook", lambda: webhook(cluster, ns, jobs, 5), lambda r: f"webhook -> Job p50 {fmt(r.get('p50_s'))} s")
        if not quick:
            more = [f"bench-reg-{i:04d}" for i in range(1000, 5000)]
            phase(out, "burst_4k_more", lambda: burst(cluster, ns, ready, more, artifact, 900),
                  lambda r: f"4,000 more: all Ready in {fmt(r['all_ready_s'])} s")
            out["rss_mib"]["5k"] = rss_now(cluster)
            out["objects_at_5k"] = 5000 + 20 + 200 + 5
    finally:
        jobs.stop()
        ready.stop()
        out["operator_at_end"] = cluster.operator_restarts()


def report(res: dict[str, Any]) -> None:
    fl, cj, b1, md, wh, rss = (res.get(k) or {} for k in ("floor", "cr_to_job", "burst_1k", "deployments", "webhook",
                                                           "rss_mib"))
    rows = [
        ("floor: create Job -> watched", fl.get("p50_s"), fl.get("p99_s"), "-", "-"),
        ("ModelVersion -> training Job (1/s)", cj.get("p50_s"), cj.get("p99_s"),
         fmt((cj.get("api") or {}).get("requests_per_pass")), fmt((cj.get("api") or {}).get("passes"))),
        ("alert webhook -> retrain Job", wh.get("p50_s"), wh.get("p99_s"),
         fmt((wh.get("api") or {}).get("requests_per_pass")), fmt((wh.get("api") or {}).get("passes"))),
    ]
    print(table(["latency", "p50 s", "p99 s", "API req/pass", "passes"], rows))
    print(f"  kubectl create (process included) p50 {fmt(fl.get('kubectl_create_p50_s'))} s")
    scale_rows = [("burst of 1,000 registering ModelVersions", fmt(b1.get("all_ready_s")),
                   fmt((b1.get("api") or {}).get("requests_per_pass")), fmt((b1.get("api") or {}).get("passes")))]
    b4 = res.get("burst_4k_more") or {}
    if b4:
        scale_rows.append(("4,000 more (to 5,000)", fmt(b4.get("all_ready_s")),
                           fmt((b4.get("api") or {}).get("requests_per_pass")), fmt((b4.get("api") or {}).get("passes"))))
    api = md.get("api") or {}
    scale_rows.append((f"200 ModelDeployments, {fmt(md.get('window_s'))} s window", "-",
                       fmt(api.get("requests_per_pass")), fmt(api.get("passes"))))
    print(table(["scale", "all Ready s", "API req/pass", "passes"], scale_rows))
    print(f"  ModelDeployments: {fmt(md.get('reconciled'))} of {fmt(md.get('deployments'))} reconciled; in the window "
          f"{fmt(api.get('passes'))} passes, {fmt(api.get('list_modelversions'))} ModelVersion lists")
    print(f"  ModelDeployment pass: LIST modelversions/pass {fmt(api.get('list_modelversions_per_pass'))}; "
          f"mlops.dev + children per pass: {json.dumps({k: round(v, 3) for k, v in (api.get('mlops_requests_per_pass') or {}).items()})}")
    print(f"  operator RSS MiB at 0 / 1k / 5k objects: {fmt(rss.get('0'))} / {fmt(rss.get('1k'))} / {fmt(rss.get('5k'))}")
    print("\nbars (informational):")
    for q in ("p50_s", "p99_s"):
        r = ratio(cj.get(q), fl.get(q))
        print(bar_line(f"CR -> Job {q[:3]} <= 3x the bare create ({times(r)})", None if r is None else r <= 3))
    print(bar_line(f"1,000 ModelVersions all Ready <= 60 s ({fmt(b1.get('all_ready_s'))} s)",
                   None if b1.get("all_ready_s") is None else b1["all_ready_s"] <= 60))
    lists = api.get("list_modelversions_per_pass")
    print(bar_line(f"no ModelVersion relist per ModelDeployment pass ({fmt(lists)}/pass)",
                   None if lists is None else lists < 0.01))
    start, end = res.get("operator_at_start") or {}, res.get("operator_at_end") or {}
    restarted = end.get("restarts", 0) - start.get("restarts", 0) if start.get("pod") == end.get("pod") else None
    if restarted:
        print(f"  the operator restarted {restarted} time(s) during the run (last: {end.get('last_reason')}): "
              "the RSS read at 5k is a restarted process's")
    print(bar_line(f"operator RSS at 5k objects <= 256 MiB ({fmt(rss.get('5k'))} MiB)",
                   None if rss.get("5k") is None else (rss["5k"] <= 256 and not restarted)))
    print(bar_line(f"alert webhook -> retrain Job, reported (p50 {fmt(wh.get('p50_s'))} s)", None))


def run(quick: bool | None = None) -> None:
    quick = os.environ.get("MLOPS_BENCH_OPERATOR_QUICK") == "1" if quick is None else quick
    try:
        cluster = Cluster()
    except Unavailable as exc:
        print(f"  unavailable: {exc}")
        write_results("operator", {"unavailable": str(exc)})
        return
    replicas = cluster.operator_replicas()
    store = ArtifactStore.from_settings()
    prefix = f"s3://{os.environ.get('S3_BUCKET', 'mlops')}/bench/operator/{uuid.uuid4().hex}/"
    store.write_version(prefix, {"model.joblib": MODEL_BYTES, "metrics.json": b'{"metrics": {"accuracy": 0.9}}'})
    artifact = {"uri": prefix, "sha256": sha256_hex(MODEL_BYTES)}
    ns, res = cluster.namespace(), dict[str, Any]()
    try:
        secret = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL",
                                             "S3_BUCKET")}
        kubectl("-n", ns, "create", "secret", "generic", "mlops-s3", *(f"--from-literal={k}={v}" for k, v in secret.items()))
        cluster.restart_operator()
        started = time.monotonic()
        measure(cluster, ns, artifact, quick, res)
        res["duration_s"] = time.monotonic() - started
    finally:
        cleanup_started = time.monotonic()
        cluster.delete_namespace(ns)  # with the operator still running, so finalizers are released
        cluster.scale_operator(replicas)
        store.delete_prefix(prefix)
        print(f"  cleaned up {ns} in {time.monotonic() - cleanup_started:.0f} s; operator back to {replicas} replica(s)")
    report(res)
    path = write_results("operator", res)
    print(f"\nresults: {path}")
