"""The RetrainPolicy pass loop against the real apiserver (and the local Prometheus for the metric trigger).

Ticks are driven here as the Kopf timer would (``run_passes`` with the real ``step``), so each effect can be
checked after it: an alert recorded, then exactly one ModelVersion created from the template, nothing more
on later ticks, a second alert held by maxConcurrent, the version's end recorded, a third alert held by the
cooldown, and the version kept when the policy is deleted. The /alerts webhook is played by a status
write with the resourceVersion, racing a pass: the pass's write gets a 409, decides again, and neither
alert is lost.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from test_operator_references import apply, crds, get  # noqa: F401  (shared fixtures and helpers)

from mlops_operator.api.v1alpha1.common import format_time
from mlops_operator.handlers import reconciler
from mlops_operator.handlers import retrainpolicy as handler
from mlops_operator.logic.status import Event
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube
from tests.conftest import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAME = "bc-retrain"
TEMPLATE = {"labels": {"channel": "loop"},
            "training": {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
                         "hyperparameters": {"C": 0.5}, "metrics": ["accuracy"]},
            "gates": {"minMetrics": {"accuracy": 0.9}}}
ALERTS = {"alerts": [{"matchLabels": {"alertname": "MLOpsFeatureDriftHigh"}}]}


@pytest.fixture()
def events(monkeypatch) -> list[Event]:
    """Events the passes post (Kopf's poster runs only inside an operator)."""
    posted: list[Event] = []
    monkeypatch.setattr(reconciler, "post_events", lambda obj, evs: posted.extend(evs))
    return posted


@pytest.fixture()
def settings(monkeypatch, cluster_env):
    monkeypatch.setenv("MLOPS_PROMETHEUS_URL", cluster_env["PROMETHEUS_URL"])
    operator_settings.cache_clear()
    yield operator_settings()
    operator_settings.cache_clear()


async def tick(namespace: str, step=handler.step) -> None:
    body = await kube.get_custom(handler.PLURAL, namespace, NAME)
    retry = await reconciler.run_passes(handler.KIND, handler.PLURAL, body, {}, logging.getLogger("test"), step)
    assert retry is None, retry


def policy(namespace: str, triggers: dict | None = None, template: dict | None = None, **spec: Any) -> None:
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": NAME},
                      "spec": {"model": "breast-cancer", "template": template or TEMPLATE,
                               "triggers": triggers or ALERTS, "cooldown": "1h", **spec}})


def alert(fp: str, starts: str = "2026-03-01T11:58:00Z") -> dict[str, Any]:
    return {"fingerprint": fp, "startsAt": starts, "alertname": "MLOpsFeatureDriftHigh",
            "labels": {"alertname": "MLOpsFeatureDriftHigh", "model": "breast-cancer"},
            "receivedAt": "2026-03-01T12:00:00Z"}


async def webhook_append(namespace: str, *alerts: dict[str, Any]) -> None:
    """What the /alerts webhook does: append to pendingAlerts, conditional on the resourceVersion read."""
    body = await kube.get_custom(handler.PLURAL, namespace, NAME)
    pending = ((body.get("status") or {}).get("pendingAlerts") or []) + list(alerts)
    await kube.patch_status(handler.PLURAL, namespace, NAME, {"pendingAlerts": pending},
                            resource_version=body["metadata"]["resourceVersion"])


def status_of(namespace: str, kind: str = "retrainpolicy", name: str = NAME) -> dict[str, Any]:
    return (get(namespace, kind, name) or {}).get("status") or {}


def created_versions(namespace: str) -> list[dict[str, Any]]:
    proc = kubectl("-n", namespace, "get", "modelversions", "-l", f"mlops.dev/retrainpolicy={NAME}", "-o", "json")
    return json.loads(proc.stdout)["items"]


def outcomes(namespace: str) -> list[tuple[str, str, str | None]]:
    return [(h["source"], h["outcome"], h.get("modelVersion")) for h in status_of(namespace).get("history") or []]


def set_phase(namespace: str, kind: str, name: str, status: dict[str, Any]) -> None:
    kubectl("-n", namespace, "patch", kind, name, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": status}))


async def test_given_a_pending_alert_then_one_modelversion_then_cooldown_then_its_end_and_it_outlives_the_policy(
        crds, namespace, settings, events):
    policy(namespace)
    await tick(namespace)  # first look: Idle, nothing to do
    assert status_of(namespace)["phase"] == "Idle" and created_versions(namespace) == []
    await webhook_append(namespace, alert("f1"))

    await tick(namespace)  # records r1, then creates it, then sees it: three passes of one tick
    (mv,) = created_versions(namespace)
    rp = get(namespace, "retrainpolicy", NAME)
    st = rp["status"]
    assert mv["metadata"]["name"] == f"{NAME}-r1" and "ownerReferences" not in mv["metadata"]
    assert mv["metadata"]["labels"] == {
        "channel": "loop", "mlops.dev/retrainpolicy": NAME, "mlops.dev/trigger": "alert"}
    assert mv["metadata"]["annotations"]["mlops.dev/retrainpolicy-uid"] == rp["metadata"]["uid"]
    assert "MLOpsFeatureDriftHigh" in mv["metadata"]["annotations"]["mlops.dev/trigger-detail"]
    assert mv["spec"] == {"model": "breast-cancer", "training": {**TEMPLATE["training"], "timeout": "30m"},
                          "gates": TEMPLATE["gates"]}
    assert "pendingAlerts" not in st and st["retrains"] == 1 and st["active"] == [f"{NAME}-r1"]
    assert st["phase"] == "Retraining" and outcomes(namespace) == [("alert", "Created", f"{NAME}-r1")]
    assert st["history"][0]["fingerprint"] == "f1@2026-03-01T11:58:00Z" and st["lastTriggered"] == st["history"][0]
    assert [e.reason for e in events] == ["RetrainStarted"]

    version = rp["metadata"]["resourceVersion"]
    await tick(namespace)
    await tick(namespace)
    assert get(namespace, "retrainpolicy", NAME)["metadata"]["resourceVersion"] == version
    assert len(created_versions(namespace)) == 1

    # Alerts that began after r1 started are news (older ones were answered by r1 and are dropped).
    later = format_time(datetime.now(timezone.utc) + timedelta(seconds=2))
    await webhook_append(namespace, alert("f2", later))  # r1 still trains: maxConcurrent 1 holds it
    await tick(namespace)
    assert len(created_versions(namespace)) == 1 and "pendingAlerts" not in status_of(namespace)
    assert outcomes(namespace) == [("alert", "Created", f"{NAME}-r1"), ("alert", "MaxConcurrent", None)]
    assert events[-1].reason == "RetrainSkipped"

    set_phase(namespace, "modelversion", f"{NAME}-r1", {"phase": "Ready"})
    await tick(namespace)
    st = status_of(namespace)
    assert "active" not in st and st["phase"] == "CoolingDown" and st["lastTriggered"]["outcome"] == "Ready"
    assert outcomes(namespace)[0] == ("alert", "Ready", f"{NAME}-r1") and events[-1].reason == "RetrainSucceeded"

    await webhook_append(namespace, alert("f3", later))  # a free slot, but the cooldown (1h) holds it
    await tick(namespace)
    assert len(created_versions(namespace)) == 1
    assert outcomes(namespace)[1:] == [("alert", "MaxConcurrent", None), ("alert", "CoolingDown", None)]

    kubectl("-n", namespace, "delete", "retrainpolicy", NAME, "--wait=true")
    time.sleep(3)  # the garbage collector would have acted by now on an owned object
    assert get(namespace, "modelversion", f"{NAME}-r1") is not None


async def test_given_a_webhook_write_racing_a_pass_then_the_pass_decides_again_and_no_alert_is_lost(
        crds, namespace, settings, events):
    policy(namespace)
    await tick(namespace)
    await webhook_append(namespace, alert("f1"))
    raced = []

    async def racing_step(obj, ctx):
        outcome = await handler.step(obj, ctx)
        if not raced:  # the webhook writes between this pass's read and its status write
            raced.append(True)
            await webhook_append(namespace, alert("f2"))
        return outcome

    await tick(namespace, racing_step)
    assert outcomes(namespace) == [("alert", "Coalesced", None), ("alert", "Created", f"{NAME}-r1")]
    assert {h["fingerprint"].split("@")[0] for h in status_of(namespace)["history"]} == {"f1", "f2"}
    assert len(created_versions(namespace)) == 1 and "pendingAlerts" not in status_of(namespace)


async def test_given_a_metric_trigger_then_the_real_prometheus_value_retrains_and_an_unreachable_one_never_does(
        crds, namespace, settings, events, monkeypatch):
    metric = {"query": "vector(0.5)", "op": "<", "threshold": 0.85, "for": "0s", "interval": "1m"}
    policy(namespace, triggers={"metric": metric})
    await tick(namespace)
    st = status_of(namespace)
    assert st["lastMetricCheck"]["value"] == 0.5 and st["retrains"] == 1
    assert outcomes(namespace) == [("metric", "Created", f"{NAME}-r1")]
    (mv,) = created_versions(namespace)
    assert mv["metadata"]["labels"]["mlops.dev/trigger"] == "metric"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conditions["MetricAvailable"] == ("True", "Measured") and conditions["Ready"] == ("True", "Watching")
    checked = st["lastMetricCheck"]["at"]
    await tick(namespace)
    assert status_of(namespace)["lastMetricCheck"]["at"] == checked  # queried once per interval, not per tick

    kubectl("-n", namespace, "delete", "retrainpolicy", NAME, "--wait=true")
    monkeypatch.setenv("MLOPS_PROMETHEUS_URL", "http://127.0.0.1:9")  # nothing listens there
    operator_settings.cache_clear()
    policy(namespace, triggers={"metric": metric}, cooldown="0s")
    await tick(namespace)
    st = status_of(namespace)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conditions["MetricAvailable"] == ("False", "PrometheusUnavailable")
    assert "metricBreachSince" not in st and "retrains" not in st


async def test_given_a_featureset_then_invalid_until_it_exists_and_its_new_snapshot_retrains(
        crds, namespace, settings, events):
    template = {"training": {"featureSet": {"name": "bc-features"}, "estimator": "sklearn.linear_model.LogisticRegression"}}
    policy(namespace, triggers={"onFeatureSetUpdate": True}, template=template)
    kubectl("-n", namespace, "annotate", "retrainpolicy", NAME, "mlops.dev/retrain=now")
    await tick(namespace)
    st = status_of(namespace)
    assert st["phase"] == "Failed" and outcomes(namespace) == [("manual", "InvalidSpec", None)]
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Ready"] == "FeatureSetNotFound"

    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": "bc-features"},
                      "spec": {"source": {"builtin": "breast_cancer"}, "target": "target"}})

    def snapshot(version: str) -> None:
        set_phase(namespace, "featureset", "bc-features", {"phase": "Ready", "latestVersion": version, "versions": [
            {"version": version, "uri": f"s3://mlops/features/bc-features/{version}/", "rows": 569}]})

    snapshot("v1")
    await tick(namespace)
    st = status_of(namespace)
    assert st["phase"] == "Idle" and st["lastFeatureSetVersion"] == "v1" and created_versions(namespace) == []
    snapshot("v2")
    await tick(namespace)
    (mv,) = created_versions(namespace)
    assert mv["metadata"]["labels"]["mlops.dev/trigger"] == "featureSet"
    # Pinned to the snapshot that triggered it, not to whatever is latest when it trains.
    assert mv["spec"]["training"]["featureSet"] == {"name": "bc-features", "version": "v2"}
    assert status_of(namespace)["lastFeatureSetVersion"] == "v2"
    assert outcomes(namespace)[-1] == ("featureSet", "Created", f"{NAME}-r1")


async def test_given_an_alert_and_a_featureset_template_then_a_fresh_snapshot_is_requested_and_the_retrain_pinned_to_it(
        crds, namespace, settings, events):
    template = {"training": {"featureSet": {"name": "bc-features"}, "estimator": "sklearn.linear_model.LogisticRegression"}}
    apply(namespace, {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": "bc-features"},
                      "spec": {"source": {"builtin": "breast_cancer"}, "target": "target"}})
    v1 = {"version": "v1", "uri": f"s3://mlops/features/{namespace}/bc-features/v1/", "rows": 569}
    set_phase(namespace, "featureset", "bc-features", {"phase": "Ready", "latestVersion": "v1", "versions": [v1]})
    policy(namespace, template=template)
    await tick(namespace)
    await webhook_append(namespace, alert("fresh-1"))
    await tick(namespace)  # recorded as Refreshing, then the FeatureSet is asked (one tick runs both passes)
    record = status_of(namespace)["lastTriggered"]
    assert record["outcome"] == "Refreshing" and created_versions(namespace) == []
    request = record["snapshotRequest"]
    fs = get(namespace, "featureset", "bc-features")
    assert fs["metadata"]["annotations"]["mlops.dev/materialize"] == request
    assert fs["spec"] == {"source": {"builtin": "breast_cancer"}, "target": "target"}  # the spec is never written

    await tick(namespace)  # the FeatureSet has not answered: nothing trains on the stale v1
    assert created_versions(namespace) == [] and status_of(namespace)["lastTriggered"]["outcome"] == "Refreshing"

    v2 = {"version": "v2", "uri": f"s3://mlops/features/{namespace}/bc-features/v2/", "rows": 569,
          "trigger": "Request", "request": request}
    set_phase(namespace, "featureset", "bc-features", {"latestVersion": "v2", "handledRequest": request,
                                                       "versions": [v1, v2]})
    await tick(namespace)
    (mv,) = created_versions(namespace)
    assert mv["spec"]["training"]["featureSet"] == {"name": "bc-features", "version": "v2"}
    last = status_of(namespace)["lastTriggered"]
    assert last["outcome"] == "Created" and last["featureSetVersion"] == "v2" and last["snapshotRequest"] == request
    assert ("Normal", "SnapshotReady") in [(e.type, e.reason) for e in events]
