"""One heavy client must not cost everyone else (issue #14, Show 1), on the local cluster.

A ModelDeployment with `spec.serving.limits` serves v1, then starts a canary to v2. While the canary runs,
four abusive clients send ~1 MB bodies through the entry Service (the builtin router): two send junk, two send
15,000-row batches. A well-behaved client keeps predicting beside them. The test asserts that:
- every abusive request gets a 4xx or 429, never a 5xx or a dropped connection;
- every well-behaved request gets a 200;
- no serving or router pod restarts or loses readiness (the pods' Ready condition has not moved since
  before the abuse), and the canary is promoted, not rolled back;
- the server and the router count the refusals by reason (`mlops_rejected_requests_total`,
  `mlops_router_rejected_total`).

Latencies are printed for the record, never asserted; the abuse benchmark (`make bench`) measures them.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time

import httpx
import pytest

from mlops_operator.builders.labels import LABEL_COMPONENT
from mlops_operator.builders.serving import SERVING
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e

FEATURES = len(kit.ROWS[0])
MAX_ROWS = 12_000  # not the default (10,000): a 413 naming it proves the spec reached the pod
BIG_ROWS = 15_000
LIMITS = {"maxRowsPerRequest": MAX_ROWS, "maxConcurrentLargeRequests": 2, "maxConcurrentRequests": 32}


def junk_body(seed: int) -> bytes:
    """About 1 MB (under the 1 MiB body limit) of something that is not a prediction request."""
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(1_000_000))


def batch_body() -> bytes:
    """A V1 request of 15,000 rows in about 1 MB: one-digit values keep it under the body limit."""
    row = "[" + ",".join("1" for _ in range(FEATURES)) + "]"
    return ('{"instances":[' + ",".join([row] * BIG_ROWS) + "]}").encode()


class Abuser(threading.Thread):
    """POSTs one body in a loop until stopped; keeps every status code (0: no answer)."""

    def __init__(self, url: str, body: bytes):
        super().__init__(daemon=True)
        self.url, self.body, self.codes, self.messages = url, body, [], set()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url, content=self.body, headers={"content-type": "application/json"})
                    self.codes.append(response.status_code)
                    if response.status_code == 413:
                        self.messages.add(response.json().get("error", ""))
                except httpx.HTTPError:
                    self.codes.append(0)


def pods(ns: str) -> list[dict]:
    return json.loads(kubectl("-n", ns, "get", "pods", "-l", "mlops.dev/modeldeployment=bc", "-o", "json").stdout)["items"]


def ready_since(pod: dict) -> str | None:
    """When the pod last became Ready (None if it is not Ready now)."""
    for condition in pod["status"].get("conditions", []):
        if condition["type"] == "Ready":
            return condition["lastTransitionTime"] if condition["status"] == "True" else None
    return None


class PodWatch(threading.Thread):
    """Every second: which pods were Ready and then were not (while not being deleted), and any restart.

    A readiness flip takes at least two failed probes (5 s apart) to show, so a 1 s poll sees it; a Ready
    condition whose lastTransitionTime moved catches anything shorter for pods that lived throughout."""

    def __init__(self, ns: str):
        super().__init__(daemon=True)
        self.ns, self.stop = ns, threading.Event()
        self.first: dict[str, str | None] = {}
        self.was_ready: dict[str, bool] = {}
        self.flips: list[tuple[str, float]] = []
        self.restarts: dict[str, int] = {}

    def look(self) -> list[dict]:
        current = pods(self.ns)
        for pod in current:
            name, since = pod["metadata"]["name"], ready_since(pod)
            self.first.setdefault(name, since)
            self.restarts[name] = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))
            if pod["metadata"].get("deletionTimestamp"):
                continue  # a replaced version's pods leave: not a flip
            if self.was_ready.get(name) and since is None:
                self.flips.append((name, time.time()))
            self.was_ready[name] = since is not None
        return current

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.look()
def scrape(base: str, series: str) -> dict[str, float]:
    """`series` samples of a pod's /metrics (a serving pod, or the router behind the entry Service), by `reason`."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(series + "{") and 'reason="' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_given_abusive_clients_during_a_canary_when_a_good_client_predicts_then_it_is_served_and_nothing_breaks(
        user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: kit.FAST + 1})
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "30s"}]}},
                        kit.analysis(kit.ERROR_RATE))
    md["spec"]["serving"]["limits"] = LIMITS
    base = kit.deploy_first(ns, md)
    predict = f"{base}/v1/models/{kit.MODEL}:predict"

    watch = PodWatch(ns)
    with kit.Load(base, pause=0.02) as good:
        good.wait_answers(count=200)  # the idle baseline
        idle_until = time.time()
        at_start = watch.look()
        assert all(ready_since(p) for p in at_start), [p["metadata"]["name"] for p in at_start]
        watch.start()
        abusers = [Abuser(predict, junk_body(1)), Abuser(predict, junk_body(2)),
                   Abuser(predict, batch_body()), Abuser(predict, batch_body())]
        for abuser in abusers:
            abuser.start()
        try:
            kit.patch_spec(ns, {"version": v2})
            final = kit.watch(ns, lambda st: (st.get("phase") == "Succeeded" and st.get("stableVersion") == v2)
                              or st.get("phase") in {"RolledBack", "Failed"}, timeout=300)
            time.sleep(5)
        finally:
            for abuser in abusers:
                abuser.stop.set()
            for abuser in abusers:
                abuser.join(60)
            watch.stop.set()
            watch.join(10)
        abuse_until = time.time()
        at_end = watch.look()

    history = [h.get("event") for h in final.get("history", [])]
    assert final["phase"] == "Succeeded" and final["stableVersion"] == v2, final
    assert "rolledBack" not in history, final
    assert not watch.flips, f"readiness flipped: {watch.flips}"
    assert not [n for n, count in watch.restarts.items() if count], watch.restarts
    for pod in at_end:  # pods that lived throughout became Ready before the abuse and never since
        name = pod["metadata"]["name"]
        if watch.first.get(name) and name in {p["metadata"]["name"] for p in at_start}:
            assert ready_since(pod) == watch.first[name], f"{name} Ready since {watch.first[name]} -> {ready_since(pod)}"

    abusive = [code for abuser in abusers for code in abuser.codes]
    assert len(abusive) >= 20, f"only {len(abusive)} abusive requests were answered"
    assert all(code in (400, 413, 429) for code in abusive), sorted(set(abusive))
    batch_messages = set().union(*(a.messages for a in abusers[2:]))
    assert any(f"the limit is {MAX_ROWS} rows" in m for m in batch_messages), batch_messages

    served = [s for s in good.samples if s.at >= idle_until]
    assert len(served) >= 100, len(served)
    assert not [s for s in served if s.code != 200], [(s.code, s.at) for s in served if s.code != 200][:10]

    counted: dict[str, float] = {}
    for pod in at_end:
        if pod["metadata"]["labels"].get(LABEL_COMPONENT) == SERVING and not pod["metadata"].get("deletionTimestamp"):
            for reason, value in scrape(f"http://{pod['status']['podIP']}:8080", "mlops_rejected_requests_total").items():
                counted[reason] = counted.get(reason, 0.0) + value
    assert counted.get("malformed", 0) + counted.get("too_many_rows", 0) + counted.get("large_overloaded", 0) > 0, \
        counted

    routed = scrape(base, "mlops_router_rejected_total")  # the router answers /metrics itself
    assert 0 < routed.get("large_overloaded", 0) + routed.get("overloaded", 0) <= abusive.count(429), (routed, len(abusive))

    idle = [s.seconds for s in good.samples if s.at < idle_until and s.code == 200]
    abused = [s.seconds for s in served if s.at <= abuse_until]
    print(f"\nwell-behaved client: idle p50 {statistics.median(idle) * 1e3:.1f} ms p99 {p99(idle) * 1e3:.1f} ms "
          f"({len(idle)}); under abuse p50 {statistics.median(abused) * 1e3:.1f} ms p99 {p99(abused) * 1e3:.1f} ms "
          f"({len(abused)}); abusive answers {len(abusive)}: "
          f"{ {c: abusive.count(c) for c in sorted(set(abusive))} }; server refusals {counted}")
