"""Fault scenarios of the alert path against the installed operator (two replicas, only the leader answers
/alerts through the Service): bad payloads are refused with nothing recorded (scenario 25), and an alert
fired while no operator runs is re-sent by Alertmanager and processed exactly once when it is back (21)."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.conftest import kubectl
from tests.e2e import fault_kit as faults
from tests.e2e.conftest import wait_for_phase


def _webhook(cluster_env: dict) -> tuple[str, dict[str, str]]:
    token = open(cluster_env["ALERT_WEBHOOK_TOKEN_FILE"]).read().strip()
    return cluster_env["ALERT_WEBHOOK_URL"], {"Authorization": f"Bearer {token}"}


def _payload(alerts: list[dict], version: str = "4", **extra) -> dict:
    return {"version": version, "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "mlops-operator", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": alerts, **extra}


def _alert(labels: dict[str, str], fingerprint: str, starts_at: str, **extra) -> dict:
    return {"status": "firing", "labels": labels, "annotations": {}, "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint, "generatorURL": "", **extra}


@pytest.mark.e2e
@pytest.mark.faults
@pytest.mark.scenario(25, "malformed, wrong-version, oversized webhook payloads")
def test_given_the_deployed_webhook_when_payloads_are_malformed_oversized_or_another_version_then_refused_unrecorded(
        user_namespace, cluster_env):
    ns, run = user_namespace, uuid.uuid4().hex[:6]
    policy = "bc-payloads"
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(faults.retrain_policy(policy, "MLOpsPayloadE2E", run)))
    faults.wait_until("the policy reconciled", lambda: faults.policy_status(ns, policy).get("observedGeneration"))
    faults.wait_for_replicas()
    url, auth, restarts = *_webhook(cluster_env), faults.restarts()
    labels = {"alertname": "MLOpsPayloadE2E", "namespace": ns, "model": "breast-cancer", "e2e_run": run}
    good = _alert(labels, f"{run}0000000000", "2026-01-01T00:00:00Z")

    def post(body: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(url, content=body, headers={**auth, "Content-Type": "application/json", **(headers or {})},
                          timeout=30)

    refused = {
        "malformed JSON": (post('{"version": "4", "alerts": [{"labels": '), 400, "not valid JSON"),
        "wrong version": (post(json.dumps(_payload([good], version="3"))), 400, "version"),
        "alerts not a list": (post(json.dumps(_payload([]) | {"alerts": {"a": 1}})), 400, "alerts"),
        "alert without startsAt": (post(json.dumps(_payload([{"status": "firing", "fingerprint": "x"}]))), 400,
                                   "startsAt"),
        "oversized (2 MiB)": (post(json.dumps(_payload([good], padding="x" * (2 * 1024 * 1024)))), 413, "larger"),
        "no token": (httpx.post(url, json=_payload([good]), timeout=30), 401, "token"),
    }
    for case, (response, code, says) in refused.items():
        assert response.status_code == code, (case, response.status_code, response.text[:300])
        assert says in response.text, (case, response.text[:300])
    assert not faults.policy_status(ns, policy).get("pendingAlerts"), faults.policy_status(ns, policy)
    assert faults.policy_status(ns, policy).get("retrains", 0) == 0

    # Unknown fields anywhere are ignored: the same alert with extras is recorded, once.
    extra = _payload([good | {"futureField": {"nested": True}}], futureTopLevel=[1, 2, 3])
    answer = post(json.dumps(extra))
    assert answer.status_code == 200, answer.text
    assert answer.json()["matched"] == [{"namespace": ns, "name": policy, "recorded": 1}], answer.json()
    again = post(json.dumps(extra))
    assert again.status_code == 200 and again.json()["matched"] == [{"namespace": ns, "name": policy, "recorded": 0}]
    # The operator is still the same processes: nothing crashed on the way.
    assert faults.restarts() == restarts, (restarts, faults.restarts())
    kubectl("-n", ns, "delete", "rp", policy, "--wait=false", check=False)


def _webhook_counter(cluster_env: dict, name: str) -> float:
    """One of Alertmanager's own webhook counters (``alertmanager_<name>{integration="webhook"}``)."""
    text = httpx.get(f"{cluster_env['ALERTMANAGER_URL']}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(f'alertmanager_{name}{{integration="webhook"'))


@pytest.mark.faults
@pytest.mark.scenario(21, "operator down when an alert fires: re-sent, processed once")
def test_given_no_operator_running_when_an_alert_fires_then_alertmanager_resends_and_it_is_processed_once(
        user_namespace, cluster_env, record_property):
    ns, run = user_namespace, uuid.uuid4().hex[:6]
    policy = "bc-down"
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(faults.retrain_policy(policy, "MLOpsDownE2E", run)))
    faults.wait_until("the policy reconciled", lambda: faults.policy_status(ns, policy).get("observedGeneration"))
    try:
        faults.scale_operator(0)
        failed_before = _webhook_counter(cluster_env, "notification_requests_failed_total")
        faults.fire_alert(cluster_env, {"alertname": "MLOpsDownE2E", "namespace": ns, "e2e_run": run})
        # Alertmanager tried to deliver it and could not (nobody answers the Service): it will re-send.
        faults.wait_until("a failed webhook delivery", lambda: _webhook_counter(cluster_env, "notification_requests_failed_total") > failed_before, 60)
        assert not faults.policy_status(ns, policy).get("lastTriggered")
    finally:
        faults.scale_operator(faults.OPERATOR_REPLICAS)
    back = time.time()
    faults.wait_until("the alert recorded and acted on",
                      lambda: (faults.policy_status(ns, policy).get("lastTriggered") or {}).get("modelVersion"), 240, 2)
    recovered = time.time() - back
    record_property("recovery_s", recovered)
    print(f"\nalert fired while the operator was down: acted on {recovered:.1f}s after the operator was scaled up")
    faults.restore_operator()
    st = faults.policy_status(ns, policy)
    assert st["lastTriggered"]["source"] == "alert" and st["retrains"] == 1, st
    retrained = st["lastTriggered"]["modelVersion"]
    wait_for_phase(ns, "mv", retrained, {"Ready", "Rejected", "Failed"}, 420)
    # Alertmanager keeps re-sending the firing alert (repeat interval): still one retrain, one version.
    sent = _webhook_counter(cluster_env, "notifications_total")
    faults.wait_until("another delivery of the still firing alert", lambda: _webhook_counter(cluster_env, "notifications_total") > sent, 150, 2)
    st = faults.policy_status(ns, policy)
    assert st["retrains"] == 1 and faults.retrained_versions(ns, policy) == [retrained], st
    kubectl("-n", ns, "delete", "rp", policy, "--wait=false", check=False)

