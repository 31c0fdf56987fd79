"""The /alerts webhook against the real apiserver: the operator's aiohttp app runs in-process on 127.0.0.1
(the in-cluster operator is scaled to zero by the integration conftest, so nothing consumes what is written)
and records Alertmanager v4 payloads on a real RetrainPolicy's status.pendingAlerts — once per firing,
across re-sends, and without losing a concurrent status write (a real 409 from the apiserver). An alert acts
only in the namespace its `namespace` label names: of two policies with equal names and equal matchLabels in
two namespaces, only that namespace's records it; one without the label is recorded nowhere and counted in
mlops_operator_alerts_ignored_total, read from the app's own /metrics.

The last test goes through the REAL Alertmanager: an alert posted to its API is routed by the local
config's test route (label mlops_test_receiver="true" -> 127.0.0.1:$ALERT_TEST_RECEIVER_PORT, bearer token
from .local/alert-token) to the same webhook app, which records it on the policy."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import httpx
import pytest
import yaml

from prometheus_client.parser import text_string_to_metric_families

from mlops_operator import web
from mlops_operator.handlers import alerts as handler
from mlops_operator.providers import kube
from test_operator_references import REPO_ROOT, apply, crds, get  # noqa: F401  (shared fixtures)
from tests.conftest import kubectl

pytestmark = pytest.mark.integration

POLICY = "bc-retrain"


def _policy(namespace: str, run: str) -> dict[str, Any]:
    """The shipped example, its alert trigger narrowed to this run's label."""
    doc = yaml.safe_load((REPO_ROOT / "manifests" / "examples" / "retrainpolicy.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["triggers"]["alerts"] = [{"matchLabels": {"alertname": "MLOpsFeatureDriftHigh", "run": run}}]
    return doc


def _alert(namespace: str | None, run: str, starts_at: str, fingerprint: str = "4f2b0c9d1e3a5b7c",
           status: str = "firing") -> dict[str, Any]:
    """An alert as the shipped rule labels it (``namespace`` kept by its aggregation); None = without it."""
    labels = {"alertname": "MLOpsFeatureDriftHigh", "model": "breast-cancer", "run": run, "feature": "f0"}
    return {"status": status, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint,
            "labels": labels if namespace is None else {**labels, "namespace": namespace},
            "annotations": {"summary": "PSI above 0.25"}, "generatorURL": "http://10.213.0.1:9090/graph"}


def _payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": '{}:{alertname="MLOpsFeatureDriftHigh"}', "truncatedAlerts": 0,
            "status": "firing", "receiver": "mlops-operator", "groupLabels": {"alertname": "MLOpsFeatureDriftHigh"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://10.213.0.1:9093", "alerts": list(alerts)}


def _pending(namespace: str) -> list[tuple[str, str]]:
    status = (get(namespace, "retrainpolicy", POLICY) or {}).get("status") or {}
    return [(p["fingerprint"], p["startsAt"]) for p in status.get("pendingAlerts") or []]


@contextlib.asynccontextmanager
async def _webhook(token: str, access: handler.KubeAccess, port: int = 0) -> AsyncIterator[str]:
    """The operator's http app, as main.py builds it, on 127.0.0.1; yields its /alerts URL."""
    route = web.alerts_route(token, lambda batch, now: handler.record(batch, now, access))
    runner = await web.start(port, host="127.0.0.1", extra_routes=[route])
    try:
        host, bound = runner.addresses[0][:2]
        yield f"http://{host}:{bound}/alerts"
    finally:
        await runner.cleanup()


async def test_given_a_policy_when_alerts_are_posted_and_reposted_then_each_firing_is_recorded_once(
        crds, namespace):  # noqa: F811
    run, token = uuid.uuid4().hex[:8], secrets.token_hex(16)
    apply(namespace, _policy(namespace, run))
    auth = {"Authorization": f"Bearer {token}"}
    first, later = "2026-03-01T11:59:00.123456789Z", "2026-03-01T13:00:00Z"
    async with _webhook(token, handler.kube_access([namespace])) as url, httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(url, json=_payload(_alert(namespace, run, first)),
                                  headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and _pending(namespace) == []

        r = await http.post(url, json=_payload(_alert(namespace, run, first),
                                                _alert(namespace, run, first, "9" * 16, "resolved")), headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"alerts": 2, "firing": 1, "ignored": [],
                            "matched": [{"namespace": namespace, "name": POLICY, "recorded": 1}]}

        r = await http.post(url, json=_payload(_alert(namespace, run, first)), headers=auth)  # Alertmanager re-sends
        assert r.json()["matched"] == [{"namespace": namespace, "name": POLICY, "recorded": 0}]

        r = await http.post(url, json=_payload(_alert(namespace, run, later)), headers=auth)  # it fires again
        assert r.json()["matched"] == [{"namespace": namespace, "name": POLICY, "recorded": 1}]

        other = await http.post(url, json=_payload(_alert(namespace, "another-run", later)), headers=auth)
        assert other.json()["matched"] == []
        assert [i["reason"] for i in other.json()["ignored"]] == ["no_matching_policy"]
    assert _pending(namespace) == [("4f2b0c9d1e3a5b7c", first), ("4f2b0c9d1e3a5b7c", later)]
    entry = get(namespace, "retrainpolicy", POLICY)["status"]["pendingAlerts"][0]
    assert entry["alertname"] == "MLOpsFeatureDriftHigh" and entry["labels"]["run"] == run
    received = datetime.fromisoformat(entry["receivedAt"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - received) < timedelta(minutes=5)


async def test_given_a_status_write_in_between_when_recording_then_the_real_409_is_retried_and_both_writes_kept(
        crds, namespace):  # noqa: F811
    run, token = uuid.uuid4().hex[:8], secrets.token_hex(16)
    apply(namespace, _policy(namespace, run))
    real = handler.kube_access([f"{namespace}*"])  # a glob: the alert's namespace must match it to be listed
    calls = 0

    async def reconciler_writes_first(ns: str, name: str, status: dict[str, Any], rv: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:  # another writer (the reconciler) updates status after our read
            await kube.patch_status(handler.PLURAL, ns, name, {"handledRequest": "manual-1"})
        return await real.patch_status(ns, name, status, rv)

    access = dataclasses.replace(real, patch_status=reconciler_writes_first)
    async with _webhook(token, access) as url, httpx.AsyncClient(timeout=30) as http:
        r = await http.post(url, json=_payload(_alert(namespace, run, "2026-03-01T11:59:00Z")),
                            headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["matched"][0]["recorded"] == 1, r.text
    assert calls == 2, "the first write must have met a 409 and been redone on the re-read object"
    status = get(namespace, "retrainpolicy", POLICY)["status"]
    assert status["handledRequest"] == "manual-1"
    assert _pending(namespace) == [("4f2b0c9d1e3a5b7c", "2026-03-01T11:59:00Z")]


async def test_given_the_real_alertmanager_when_an_alert_fires_then_it_is_delivered_and_recorded(
        crds, namespace, cluster_env):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    apply(namespace, _policy(namespace, run))
    token = pathlib.Path(cluster_env["ALERT_WEBHOOK_TOKEN_FILE"]).read_text().strip()
    labels = {"alertname": "MLOpsFeatureDriftHigh", "model": "breast-cancer", "run": run, "namespace": namespace,
              "mlops_test_receiver": "true"}  # routed to the tests' receiver port, not the operator
    am = cluster_env["ALERTMANAGER_URL"]
    async with (_webhook(token, handler.kube_access([namespace]), port=int(cluster_env["ALERT_TEST_RECEIVER_PORT"])),
                httpx.AsyncClient(timeout=10) as http):
        starts = datetime.now(timezone.utc).replace(microsecond=0)
        posted = await http.post(f"{am}/api/v2/alerts", json=[{"labels": labels, "startsAt": starts.isoformat()}])
        assert posted.status_code == 200, posted.text
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _pending(namespace):
                await asyncio.sleep(1)
            pending = get(namespace, "retrainpolicy", POLICY)["status"].get("pendingAlerts") or []
            listed = (await http.get(f"{am}/api/v2/alerts", params={"filter": f'run="{run}"'})).json()
        finally:  # resolve it, so Alertmanager stops re-sending to a receiver that is going away
            await http.post(f"{am}/api/v2/alerts", json=[{"labels": labels, "startsAt": starts.isoformat(),
                                                         "endsAt": datetime.now(timezone.utc).isoformat()}])
    assert len(pending) == 1, f"Alertmanager did not deliver within 60 s: {pending}"
    assert pending[0]["labels"]["run"] == run and pending[0]["alertname"] == "MLOpsFeatureDriftHigh"
    assert [pending[0]["fingerprint"]] == [a["fingerprint"] for a in listed]  # Alertmanager's own fingerprint
    assert datetime.fromisoformat(pending[0]["startsAt"].replace("Z", "+00:00")) == starts


@pytest.fixture
def twin_namespace(namespace):
    """A second namespace next to ``namespace`` (another team's), deleted afterwards."""
    name = f"{namespace[:56]}-twin"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


async def _ignored_total(http: httpx.AsyncClient, alerts_url: str) -> dict[str, float]:
    """mlops_operator_alerts_ignored_total by reason, as the webhook app's /metrics exposes it."""
    text = (await http.get(alerts_url.removesuffix("/alerts") + "/metrics")).text
    return {sample.labels["reason"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "mlops_operator_alerts_ignored_total"}


async def test_given_equal_policies_in_two_namespaces_when_alerts_name_one_or_none_then_only_that_one_records(
        crds, namespace, twin_namespace):  # noqa: F811
    run, token = uuid.uuid4().hex[:8], secrets.token_hex(16)
    for ns in (namespace, twin_namespace):  # the same name, the same matchLabels
        apply(ns, _policy(ns, run))
    auth = {"Authorization": f"Bearer {token}"}
    starts = "2026-03-01T11:59:00Z"
    async with (_webhook(token, handler.kube_access([namespace, twin_namespace])) as url,
                httpx.AsyncClient(timeout=30) as http):
        before = await _ignored_total(http, url)
        r = await http.post(url, json=_payload(_alert(namespace, run, starts, "a" * 16)), headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["matched"] == [{"namespace": namespace, "name": POLICY, "recorded": 1}]

        r = await http.post(url, json=_payload(_alert(None, run, starts, "b" * 16)), headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["matched"] == [] and r.json()["ignored"] == [
            {"reason": "no_namespace", "alertname": "MLOpsFeatureDriftHigh", "fingerprint": "b" * 16}]
        after = await _ignored_total(http, url)
    assert _pending(namespace) == [("a" * 16, starts)] and _pending(twin_namespace) == []
    assert {reason: after[reason] - before.get(reason, 0.0) for reason in after} == {
        "no_namespace": 1.0, "invalid_namespace": 0.0, "namespace_not_watched": 0.0, "no_matching_policy": 0.0}

    # An operator that watches only the first namespace never acts in the second, whatever the labels say.
    async with (_webhook(token, handler.kube_access([namespace])) as url, httpx.AsyncClient(timeout=30) as http):
        r = await http.post(url, json=_payload(_alert(twin_namespace, run, starts, "c" * 16)), headers=auth)
        assert r.status_code == 200 and r.json()["matched"] == [], r.text
        assert [i["reason"] for i in r.json()["ignored"]] == ["namespace_not_watched"]
    assert _pending(twin_namespace) == []
