"""RetrainPolicy steps: triggers, gates, the recorded-then-created ModelVersion, watching it to the end."""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.v1alpha1.common import format_time, get_condition
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.api.v1alpha1.training import ModelVersionTemplate
from mlops_operator.builders.retrain import RetrainInput, build_model_version, model_version_name
from mlops_operator.logic import retrainpolicy as logic
from mlops_operator.logic.references import Problem
from tests.unit.decisions import cond, reasons

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
UID = "u-rp"
TEMPLATE = {"labels": {"channel": "loop", "mlops.dev/trigger": "spoofed"},
            "training": {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
                         "hyperparameters": {"C": 0.5}, "metrics": ["accuracy"]},
            "gates": {"minMetrics": {"accuracy": 0.9}}}
ALERTS = {"alerts": [{"matchLabels": {"alertname": "MLOpsFeatureDriftHigh"}}]}
FS_TEMPLATE = {"training": {"featureSet": {"name": "bc-features"}, "estimator": "sklearn.linear_model.LogisticRegression"}}
METRIC = {"metric": {"query": 'avg(mlops_model_accuracy{namespace="{{namespace}}", model="{{model}}"})',
                     "op": "<", "threshold": 0.85, "for": "10m", "interval": "1m"}}


def body(status: dict | None = None, annotations: dict | None = None, triggers: dict | None = None,
         **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy",
            "metadata": {"name": "bc-retrain", "namespace": "team-a", "uid": UID, "generation": 1,
                         "creationTimestamp": "2026-03-01T11:00:00Z", "annotations": annotations or {}},
            "spec": {"model": "breast-cancer", "template": TEMPLATE, "triggers": triggers or ALERTS,
                     "cooldown": "1h", **spec},
            "status": status if status is not None else {"observedGeneration": 1}}


def decide(b: dict, world: logic.World = logic.World(), now: datetime = NOW) -> logic.RetrainOutcome:
    return logic.decide(RetrainPolicy.from_body(b), b["status"], world, now)


def then(b: dict, d: logic.RetrainOutcome) -> dict:
    """The object after the decision's status was written."""
    b = copy.deepcopy(b)
    b["status"] = copy.deepcopy(d.status)
    return b


def alert(fp: str = "f1", starts: str = "2026-03-01T11:58:00Z", name: str = "MLOpsFeatureDriftHigh") -> dict:
    return {"fingerprint": fp, "startsAt": starts, "alertname": name,
            "labels": {"alertname": name, "model": "breast-cancer"}, "receivedAt": "2026-03-01T12:00:00Z"}


def outcomes(d: logic.RetrainOutcome) -> list[tuple[str, str | None, str | None]]:
    return [(h["source"], h["outcome"], h.get("modelVersion")) for h in d.status.get("history") or []]


def mine(name: str, phase: str | None = "Training", message: str = "", uid: str = UID) -> logic.ObservedVersion:
    return logic.ObservedVersion(name, phase, message, uid)


def world_with(*versions: logic.ObservedVersion, **kw) -> logic.World:
    return logic.World(versions={v.name: v for v in versions}, **kw)


def started(extra: dict | None = None) -> dict:
    """Status right after a retrain of alert f1 was recorded (the ModelVersion not created yet)."""
    d = decide(body({"observedGeneration": 1, "pendingAlerts": [alert()]}))
    return {**d.status, **(extra or {})}


# ------------------------------------------------------------------------------ record, then create


def test_given_a_pending_alert_then_retrain_r1_is_recorded_and_the_alert_consumed_before_any_create():
    d = decide(body({"observedGeneration": 1, "pendingAlerts": [alert()]}))
    assert d.model_version is None
    st = d.status
    assert "pendingAlerts" not in st
    assert st["retrains"] == 1 and st["active"] == ["bc-retrain-r1"] and st["phase"] == "Retraining"
    record = st["history"][-1]
    assert record == st["lastTriggered"]
    assert record["source"] == "alert" and record["fingerprint"] == "f1@2026-03-01T11:58:00Z"
    assert record["detail"] == "MLOpsFeatureDriftHigh {alertname=MLOpsFeatureDriftHigh, model=breast-cancer}"
    assert (record["outcome"], record["modelVersion"]) == ("Creating", "bc-retrain-r1")
    assert st["cooldownUntil"] == format_time(NOW + timedelta(hours=1))


def test_given_a_recorded_retrain_then_the_next_pass_creates_its_modelversion_from_the_template():
    d = decide(body(started()), world_with())
    mv = d.model_version
    assert mv["metadata"]["name"] == "bc-retrain-r1" and mv["metadata"]["namespace"] == "team-a"
    assert mv["metadata"]["labels"] == {"channel": "loop", "mlops.dev/retrainpolicy": "bc-retrain",
                                        "mlops.dev/trigger": "alert"}
    assert mv["metadata"]["annotations"]["mlops.dev/retrainpolicy-uid"] == UID
    assert "MLOpsFeatureDriftHigh" in mv["metadata"]["annotations"]["mlops.dev/trigger-detail"]
    assert "ownerReferences" not in mv["metadata"]  # deleting the policy never collects registered versions
    assert mv["spec"] == {"model": "breast-cancer", "training": {
        "dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
        "hyperparameters": {"C": 0.5}, "metrics": ["accuracy"], "timeout": "30m"},
        "gates": {"minMetrics": {"accuracy": 0.9}}}
    assert d.status["lastTriggered"]["outcome"] == "Created" and outcomes(d)[-1] == ("alert", "Created", "bc-retrain-r1")
    assert reasons(d) == [("Normal", "RetrainStarted")]


def test_given_the_modelversion_was_created_before_a_crash_then_it_is_marked_created_without_a_second_create():
    d = decide(body(started()), world_with(mine("bc-retrain-r1", None), pending=mine("bc-retrain-r1", None)))
    assert d.model_version is None and d.status["lastTriggered"]["outcome"] == "Created"


def test_given_a_created_retrain_then_further_passes_change_nothing():
    b = then(body(started()), decide(body(started()), world_with()))
    w = world_with(mine("bc-retrain-r1", "Training"))
    d = decide(b, w)
    assert d.model_version is None and d.status == b["status"] and d.events == []


def test_given_the_name_is_held_by_another_policys_version_then_the_next_free_number_is_used():
    w = world_with(mine("bc-retrain-r1", "Ready", uid="old"), mine("bc-retrain-r4", "Ready", uid="old"),
                   pending=mine("bc-retrain-r1", "Ready", uid="old"))
    d = decide(body(started()), w)
    assert d.model_version is None
    assert d.status["retrains"] == 5 and d.status["active"] == ["bc-retrain-r5"]
    assert d.status["lastTriggered"]["modelVersion"] == "bc-retrain-r5" and outcomes(d)[-1][2] == "bc-retrain-r5"
    assert reasons(d) == [("Warning", "ModelVersionNameTaken")]
    assert decide(then(body(started()), d), world_with()).model_version["metadata"]["name"] == "bc-retrain-r5"


def test_given_numbers_then_they_are_never_reused():
    st = {"observedGeneration": 1, "retrains": 7, "pendingAlerts": [alert()]}
    assert decide(body(st)).status["active"] == ["bc-retrain-r8"]


# ------------------------------------------------------------------------------- coalescing, gates


def test_given_an_alert_storm_then_one_retrain_and_the_rest_coalesced():
    st = {"observedGeneration": 1, "pendingAlerts": [alert(f"f{i}") for i in range(5)]}
    d = decide(body(st, historyLimit=10))
    assert d.status["retrains"] == 1 and d.status["active"] == ["bc-retrain-r1"]
    assert outcomes(d) == [("alert", "Coalesced", None)] * 4 + [("alert", "Creating", "bc-retrain-r1")]
    assert d.status["history"][-1]["fingerprint"] == "f0@2026-03-01T11:58:00Z"  # the first one names the retrain
    assert reasons(d) == [("Normal", "TriggersCoalesced")]


def test_given_a_storm_resent_after_its_records_scrolled_out_then_it_triggers_nothing():
    # The same alerts again (Alertmanager's repeat interval), their keys long gone from a short history.
    st = {"observedGeneration": 1, "retrains": 1, "history": [],
          "lastTriggered": {"at": "2026-03-01T11:59:00Z", "source": "alert", "modelVersion": "bc-retrain-r1",
                            "outcome": "Ready"},
          "pendingAlerts": [alert(f"f{i}") for i in range(5)]}
    d = decide(body(st))
    assert "pendingAlerts" not in d.status and d.status["retrains"] == 1 and not d.status.get("history")
    # An alert that began after that retrain started is news (no cooldown recorded here, so it retrains).
    later = dict(st, pendingAlerts=[alert("f9", starts="2026-03-01T11:59:30Z")])
    assert outcomes(decide(body(later))) == [("alert", "Creating", "bc-retrain-r2")]


def test_given_a_small_history_limit_then_the_retrains_record_is_the_one_kept():
    st = {"observedGeneration": 1, "pendingAlerts": [alert(f"f{i}") for i in range(5)]}
    assert outcomes(decide(body(st, historyLimit=2))) == [("alert", "Coalesced", None), ("alert", "Creating", "bc-retrain-r1")]


COOLING = {"cooldownUntil": "2026-03-01T12:30:00Z"}


@pytest.mark.parametrize("status, spec, problems, outcome", [
    ({}, {"suspend": True}, [], "Suspended"),
    ({"active": ["bc-retrain-r1"]}, {}, [], "MaxConcurrent"),
    (COOLING, {}, [], "CoolingDown"),
    ({}, {}, [Problem("FeatureSetNotFound", "spec.template.training.featureSet.name: not found")], "InvalidSpec"),
    ({"active": ["bc-retrain-r1"], **COOLING}, {"suspend": True}, [], "Suspended"),  # the first gate names it
])
def test_given_a_gate_then_the_alert_is_consumed_recorded_with_the_gate_and_no_retrain_starts(
        status, spec, problems, outcome):
    st = {"observedGeneration": 1, "retrains": 1, "pendingAlerts": [alert("f9")], **status}
    w = world_with(*(mine(n) for n in status.get("active", [])), problems=problems)
    d = decide(body(st, **spec), w)
    assert d.model_version is None and d.status["retrains"] == 1 and "pendingAlerts" not in d.status
    assert outcomes(d) == [("alert", outcome, None)] and d.status["history"][0]["fingerprint"].startswith("f9@")
    assert ("Normal", "RetrainSkipped") in reasons(d)


def test_given_cooldown_over_and_a_slot_free_then_the_next_alert_retrains():
    st = {"observedGeneration": 1, "retrains": 1, "cooldownUntil": "2026-03-01T12:00:00Z", "pendingAlerts": [alert()]}
    assert decide(body(st)).status["active"] == ["bc-retrain-r2"]


def test_given_max_concurrent_two_then_a_second_retrain_starts_while_the_first_runs():
    st = {"observedGeneration": 1, "retrains": 1, "active": ["bc-retrain-r1"], "pendingAlerts": [alert()]}
    d = decide(body(st, maxConcurrent=2, cooldown="0s"), world_with(mine("bc-retrain-r1")))
    assert d.status["active"] == ["bc-retrain-r1", "bc-retrain-r2"]


def test_given_an_alert_key_already_in_history_then_it_is_consumed_without_acting_again():
    history = [{"at": "2026-03-01T11:00:00Z", "source": "alert", "fingerprint": "f1@2026-03-01T11:58:00Z",
                "outcome": "Ready", "modelVersion": "bc-retrain-r1"}]
    st = {"observedGeneration": 1, "retrains": 1, "history": history, "pendingAlerts": [alert(), alert()]}
    d = decide(body(st))
    assert "pendingAlerts" not in d.status and d.status["history"] == history and "active" not in d.status


def test_given_manual_alert_and_schedule_together_then_the_manual_request_names_the_retrain():
    st = {"pendingAlerts": [alert()]}  # first pass: the schedule counts from creation (11:00), 12:00 is due
    b = body(st, annotations={"mlops.dev/retrain": "n1"}, triggers={**ALERTS, "schedule": "0 * * * *"})
    d = decide(b)
    assert outcomes(d) == [("alert", "Coalesced", None), ("schedule", "Coalesced", None),
                           ("manual", "Creating", "bc-retrain-r1")]
    assert decide(then(b, d), world_with()).model_version["metadata"]["labels"]["mlops.dev/trigger"] == "manual"


# ------------------------------------------------------------------------------------------ manual


def test_given_a_retrain_annotation_then_it_acts_once_and_a_new_value_acts_again():
    b = body(annotations={"mlops.dev/retrain": "n1"})
    d = decide(b)
    assert d.status["handledRequest"] == "n1" and outcomes(d) == [("manual", "Creating", "bc-retrain-r1")]
    assert d.status["history"][0]["detail"] == "mlops.dev/retrain=n1"
    b = then(b, d)
    b = then(b, decide(b, world_with()))
    again = decide(b, world_with(mine("bc-retrain-r1", "Ready")), now=NOW + timedelta(hours=2))
    assert again.status["retrains"] == 1 and "active" not in again.status
    b["metadata"]["annotations"]["mlops.dev/retrain"] = "n2"
    assert decide(b, world_with(mine("bc-retrain-r1", "Ready")), now=NOW + timedelta(hours=2)).status["retrains"] == 2


def test_given_a_request_while_suspended_then_it_is_recorded_once_as_suspended():
    b = body(annotations={"mlops.dev/retrain": "n1"}, suspend=True)
    d = decide(b)
    assert outcomes(d) == [("manual", "Suspended", None)] and d.status["handledRequest"] == "n1"
    assert outcomes(decide(then(b, d))) == [("manual", "Suspended", None)]


# ---------------------------------------------------------------------------------------- watching


RUNNING = {"observedGeneration": 1, "retrains": 1, "active": ["bc-retrain-r1"], "phase": "Retraining",
           "lastTriggered": {"at": "2026-03-01T11:00:00Z", "source": "alert", "modelVersion": "bc-retrain-r1",
                             "outcome": "Created"},
           "history": [{"at": "2026-03-01T11:00:00Z", "source": "alert", "modelVersion": "bc-retrain-r1",
                        "outcome": "Created"}]}


@pytest.mark.parametrize("observed, outcome, event", [
    (mine("bc-retrain-r1", "Ready"), "Ready", ("Normal", "RetrainSucceeded")),
    (mine("bc-retrain-r1", "Rejected", "gate minMetrics accuracy 0.8 < 0.9"), "Rejected", ("Warning", "RetrainFailed")),
    (mine("bc-retrain-r1", "Failed", "trainer exit 2: InvalidInput"), "Failed", ("Warning", "RetrainFailed")),
    (None, "Deleted", ("Warning", "RetrainFailed")),
    (mine("bc-retrain-r1", "Ready", uid="someone-else"), "Deleted", ("Warning", "RetrainFailed")),
    (mine("bc-retrain-r1", "Training", uid="someone-else"), "Deleted", ("Warning", "RetrainFailed")),
])
def test_given_an_active_version_that_ended_then_it_leaves_active_with_its_outcome(observed, outcome, event):
    d = decide(body(RUNNING), world_with(*([observed] if observed else [])))
    assert "active" not in d.status and d.status["phase"] == "Idle"
    assert d.status["history"][-1]["outcome"] == outcome and d.status["lastTriggered"]["outcome"] == outcome
    assert reasons(d) == [event]
    if observed is not None and observed.message and observed.policy_uid == UID:
        assert observed.message in d.events[0].message


def test_given_an_active_version_still_training_then_it_stays_active():
    d = decide(body(RUNNING), world_with(mine("bc-retrain-r1", "Validating")))
    assert d.status["active"] == ["bc-retrain-r1"] and d.status["phase"] == "Retraining" and d.events == []


def test_given_the_running_version_finishes_then_a_waiting_alert_can_start_the_next_retrain_in_the_same_pass():
    st = {**RUNNING, "pendingAlerts": [alert("f2")]}
    d = decide(body(st, cooldown="0s"), world_with(mine("bc-retrain-r1", "Ready")))
    assert d.status["active"] == ["bc-retrain-r2"]


# ---------------------------------------------------------------------------------------- schedule


def test_given_a_schedule_then_a_due_slot_fires_once_and_a_restart_does_not_fire_it_again():
    b = body({}, triggers={"schedule": "0 * * * *"})  # created 11:00; 12:00 fell due
    d = decide(b)
    assert outcomes(d) == [("schedule", "Creating", "bc-retrain-r1")]
    assert d.status["lastScheduledAt"] == "2026-03-01T12:00:00Z" and d.status["nextScheduledAt"] == "2026-03-01T13:00:00Z"
    b = then(b, d)
    b = then(b, decide(b, world_with()))
    again = decide(b, world_with(mine("bc-retrain-r1")), now=NOW + timedelta(seconds=20))
    assert again.status["retrains"] == 1 and again.events == []


def test_given_many_missed_slots_then_the_latest_fires_once():
    b = body({"observedGeneration": 1, "lastScheduledAt": "2026-03-01T06:00:00Z"}, triggers={"schedule": "0 * * * *"})
    d = decide(b)
    assert outcomes(d) == [("schedule", "Creating", "bc-retrain-r1")]
    assert "slot 2026-03-01T12:00:00Z; earlier slots since 2026-03-01T07:00:00Z" in d.status["history"][0]["detail"]
    assert d.status["lastScheduledAt"] == "2026-03-01T12:00:00Z"


def test_given_no_slot_due_then_only_the_next_one_is_shown():
    b = body({"observedGeneration": 1, "lastScheduledAt": "2026-03-01T12:00:00Z"}, triggers={"schedule": "*/30 * * * *"})
    d = decide(b)
    assert "history" not in d.status and d.status["nextScheduledAt"] == "2026-03-01T12:30:00Z"


def test_given_a_schedule_added_to_a_running_policy_then_it_starts_from_its_latest_slot_without_firing():
    b = body({"observedGeneration": 1, "phase": "Idle"}, triggers={"schedule": "0 * * * *"})
    d = decide(b)
    assert "history" not in d.status and d.status["lastScheduledAt"] == "2026-03-01T12:00:00Z"
    assert decide(then(b, d), now=datetime(2026, 3, 1, 13, 0, 5, tzinfo=timezone.utc)).status["retrains"] == 1


def test_given_a_slot_while_cooling_down_then_it_is_recorded_as_cooling_down_and_not_run_later():
    b = body({"observedGeneration": 1, "lastScheduledAt": "2026-03-01T11:00:00Z", **COOLING},
             triggers={"schedule": "0 * * * *"})
    d = decide(b)
    assert outcomes(d) == [("schedule", "CoolingDown", None)]
    later = decide(then(b, d), now=datetime(2026, 3, 1, 12, 40, tzinfo=timezone.utc))
    assert "retrains" not in later.status


def test_given_each_kind_of_pass_then_needs_reads_only_what_it_uses():
    def need(b: dict) -> logic.Needs:
        return logic.needs(RetrainPolicy.from_body(b), b["status"], NOW)

    idle = need(body(triggers=METRIC))
    assert (idle.versions, idle.pending, bool(idle.metric_query)) == (False, None, True)
    creating = need(body(started(), triggers=METRIC))  # creating reads the name, queries nothing
    assert (creating.versions, creating.pending, creating.metric_query) == (True, "bc-retrain-r1", None)
    assert need(body(RUNNING)).versions and need(body(RUNNING)).pending is None
    fs = need(fs_body())
    assert [(r.kind, r.name, r.field) for r in fs.references] == [
        ("FeatureSet", "bc-features", "spec.template.training.featureSet.name")]


# ------------------------------------------------------------------------------------------ metric


def metric_body(status: dict | None = None, **metric) -> dict:
    return body({"observedGeneration": 1, **(status or {})},
                triggers={"metric": {**METRIC["metric"], **metric}})


def test_given_the_metric_interval_then_the_query_is_asked_for_only_when_due_with_placeholders_filled():
    b = metric_body()
    need = logic.needs(RetrainPolicy.from_body(b), b["status"], NOW)
    assert need.metric_query == 'avg(mlops_model_accuracy{namespace="team-a", model="breast-cancer"})'
    checked = {"lastMetricCheck": {"at": "2026-03-01T12:00:00Z", "value": 0.9}}
    b = metric_body(checked)
    assert logic.needs(RetrainPolicy.from_body(b), b["status"], NOW).metric_query is None
    assert logic.needs(RetrainPolicy.from_body(b), b["status"], NOW + timedelta(seconds=30)).metric_query


@pytest.mark.parametrize("reading, available", [
    (logic.MetricReading(value=0.9), ("True", "Measured")),
    (logic.MetricReading(value=None), ("False", "NoData")),
    (logic.MetricReading(value=math.nan), ("False", "NotANumber")),
    (logic.MetricReading(value=-math.inf), ("False", "NotANumber")),
    (logic.MetricReading(problem="PrometheusUnavailable", message="cannot reach"), ("False", "PrometheusUnavailable")),
    (logic.MetricReading(problem="PrometheusNotConfigured", message="set it"), ("False", "PrometheusNotConfigured")),
])
def test_given_a_metric_answer_that_is_not_a_breach_then_no_trigger_and_the_breach_clock_stops(reading, available):
    b = metric_body({"metricBreachSince": "2026-03-01T11:00:00Z"}, **{"for": "0s"})
    d = decide(b, logic.World(metric=reading))
    assert cond(d, "MetricAvailable") == available
    assert "metricBreachSince" not in d.status and "history" not in d.status and "retrains" not in d.status
    assert d.status["lastMetricCheck"]["at"] == format_time(NOW)
    assert d.status["lastMetricCheck"].get("value") == (0.9 if available[0] == "True" else None)


def test_given_a_breach_then_it_must_hold_for_the_duration_before_it_retrains():
    b = metric_body()
    d = decide(b, logic.World(metric=logic.MetricReading(value=0.8)))
    assert d.status["metricBreachSince"] == format_time(NOW) and "retrains" not in d.status
    b = then(b, d)
    five = decide(b, logic.World(metric=logic.MetricReading(value=0.7)), NOW + timedelta(minutes=5))
    assert five.status["metricBreachSince"] == format_time(NOW) and "retrains" not in five.status
    b = then(b, five)
    ten = decide(b, logic.World(metric=logic.MetricReading(value=0.7)), NOW + timedelta(minutes=10))
    assert outcomes(ten) == [("metric", "Creating", "bc-retrain-r1")]
    assert "< 0.85" in ten.status["history"][0]["detail"]
    assert ten.status["metricBreachSince"] == format_time(NOW + timedelta(minutes=10))  # the clock restarts


def test_given_a_breach_during_the_cooldown_then_it_waits_unrecorded_and_retrains_once_the_cooldown_is_over():
    b = metric_body({"metricBreachSince": "2026-03-01T11:00:00Z", **COOLING,
                     "lastMetricCheck": {"at": "2026-03-01T12:00:00Z", "value": 0.7}})
    d = decide(b)
    assert "history" not in d.status and "metric trigger waits (cooling down" in get_condition(
        d.status["conditions"], "Ready")["message"]
    after = decide(then(b, d), now=datetime(2026, 3, 1, 12, 30, 5, tzinfo=timezone.utc))
    assert outcomes(after) == [("metric", "Creating", "bc-retrain-r1")]


def test_given_the_metric_trigger_removed_then_its_status_and_condition_go():
    st = {"metricBreachSince": "2026-03-01T11:00:00Z", "lastMetricCheck": {"at": "2026-03-01T12:00:00Z"},
          "conditions": [{"type": "MetricAvailable", "status": "False", "reason": "NoData", "message": "",
                          "lastTransitionTime": "2026-03-01T12:00:00Z"}]}
    d = decide(body({"observedGeneration": 1, **st}))
    assert "metricBreachSince" not in d.status and "lastMetricCheck" not in d.status
    assert cond(d, "MetricAvailable") is None


# -------------------------------------------------------------------------------------- featureSet


def fs_body(status: dict | None = None, **spec) -> dict:
    b = body({"observedGeneration": 1, **(status or {})}, triggers={"onFeatureSetUpdate": True}, **spec)
    b["spec"]["template"] = FS_TEMPLATE
    return b


def test_given_the_first_snapshot_seen_then_it_is_recorded_without_a_retrain():
    d = decide(fs_body(), logic.World(feature_set_version="v1"))
    assert d.status["lastFeatureSetVersion"] == "v1" and "retrains" not in d.status


def test_given_no_snapshot_yet_then_nothing_is_recorded():
    assert "lastFeatureSetVersion" not in decide(fs_body(), logic.World()).status


def test_given_a_new_snapshot_then_it_retrains_and_records_the_version():
    d = decide(fs_body({"lastFeatureSetVersion": "v1"}), logic.World(feature_set_version="v2"))
    assert outcomes(d) == [("featureSet", "Creating", "bc-retrain-r1")]
    assert d.status["lastFeatureSetVersion"] == "v2" and "published v2" in d.status["history"][0]["detail"]


def test_given_a_new_snapshot_during_the_cooldown_then_it_is_trained_on_after_the_cooldown():
    b = fs_body({"lastFeatureSetVersion": "v1", **COOLING})
    d = decide(b, logic.World(feature_set_version="v2"))
    assert "history" not in d.status and d.status["lastFeatureSetVersion"] == "v1"
    after = decide(then(b, d), logic.World(feature_set_version="v3"), datetime(2026, 3, 1, 12, 31, tzinfo=timezone.utc))
    assert outcomes(after) == [("featureSet", "Creating", "bc-retrain-r1")] and after.status["lastFeatureSetVersion"] == "v3"


def test_given_an_alert_and_a_new_snapshot_then_one_retrain_and_the_snapshot_counts_as_seen():
    b = fs_body({"lastFeatureSetVersion": "v1", "pendingAlerts": [alert()]})
    d = decide(b, logic.World(feature_set_version="v2"))
    assert outcomes(d) == [("featureSet", "Coalesced", None), ("alert", "Creating", "bc-retrain-r1")]
    assert d.status["lastFeatureSetVersion"] == "v2"


def test_given_a_new_snapshot_then_the_retrain_is_pinned_to_the_snapshot_that_triggered_it():
    b = fs_body({"lastFeatureSetVersion": "v1"})
    d = decide(b, logic.World(feature_set_version="v2"))
    assert d.status["lastTriggered"]["featureSetVersion"] == "v2" and "snapshotRequest" not in d.status["lastTriggered"]
    created = decide(then(b, d), logic.World(feature_set_version="v3"))  # v3 appeared meanwhile: still v2
    assert created.model_version["spec"]["training"]["featureSet"] == {"name": "bc-features", "version": "v2"}


# ------------------------------------------------------------------------------------ fresh data

FS = {"metadata": {"name": "bc-features", "annotations": {}},
      "status": {"latestVersion": "v1", "versions": [{"version": "v1", "uri": "s3://m/features/team-a/bc-features/v1/"}]}}
REQUEST = "retrainpolicy/bc-retrain/u-rp/r1"


def fresh_body(status: dict | None = None) -> dict:
    b = body({"observedGeneration": 1, **(status or {})})
    b["spec"]["template"] = FS_TEMPLATE
    return b


def fs_with(annotation: str | None = None, **status) -> dict:
    fs = copy.deepcopy(FS)
    if annotation:
        fs["metadata"]["annotations"]["mlops.dev/materialize"] = annotation
    fs["status"].update(status)
    return fs


def test_given_an_alert_and_a_featureset_template_then_the_retrain_first_asks_for_a_fresh_snapshot():
    b = fresh_body({"pendingAlerts": [alert()]})
    d = decide(b, logic.World(feature_set_version="v1", feature_set=FS))
    record = d.status["lastTriggered"]
    assert record["outcome"] == "Refreshing" and record["snapshotRequest"] == REQUEST
    assert d.model_version is None and d.request_snapshot is None and d.status["active"] == ["bc-retrain-r1"]
    ask = decide(then(b, d), logic.World(feature_set_version="v1", feature_set=FS))
    assert ask.request_snapshot == ("bc-features", REQUEST) and ask.model_version is None


@pytest.mark.parametrize("fs, expected", [
    (fs_with(REQUEST), None),                                              # annotated, not picked up yet
    (fs_with(REQUEST, handledRequest=REQUEST, activeVersion="v2"), None),  # materializing
    (fs_with("someone-else"), ("bc-features", REQUEST)),                   # overwritten: ask again
])
def test_given_a_refreshing_retrain_when_the_snapshot_is_not_there_yet_then_it_waits_or_asks_again(fs, expected):
    b = fresh_body({"pendingAlerts": [alert()]})
    b = then(b, decide(b, logic.World(feature_set=FS)))
    d = decide(b, logic.World(feature_set_version="v1", feature_set=fs))
    assert d.request_snapshot == expected and d.model_version is None
    assert d.status["lastTriggered"]["outcome"] == "Refreshing" and d.status["phase"] == "Retraining"
    assert "fresh snapshot" in get_condition(d.status["conditions"], "Ready")["message"]


def test_given_the_requested_snapshot_is_committed_then_the_retrain_is_pinned_to_it_and_created():
    b = fresh_body({"pendingAlerts": [alert()]})
    b = then(b, decide(b, logic.World(feature_set=FS)))
    done = fs_with(REQUEST, handledRequest=REQUEST, latestVersion="v2",
                   versions=FS["status"]["versions"] + [{"version": "v2", "uri": "s3://x/", "request": REQUEST}])
    pinned = decide(b, logic.World(feature_set_version="v2", feature_set=done))
    assert pinned.status["lastTriggered"]["outcome"] == "Creating"
    assert pinned.status["lastTriggered"]["featureSetVersion"] == "v2" and ("Normal", "SnapshotReady") in reasons(pinned)
    created = decide(then(b, pinned), logic.World(feature_set_version="v3", feature_set=done))
    assert created.model_version["metadata"]["name"] == "bc-retrain-r1"
    assert created.model_version["spec"]["training"]["featureSet"] == {"name": "bc-features", "version": "v2"}
    assert outcomes(created)[-1] == ("alert", "Created", "bc-retrain-r1")


def test_given_the_requested_materialization_failed_then_the_retrain_fails_and_nothing_trains_on_stale_data():
    b = fresh_body({"pendingAlerts": [alert()]})
    b = then(b, decide(b, logic.World(feature_set=FS)))
    failed = fs_with(REQUEST, handledRequest=REQUEST, conditions=[
        {"type": "Materialized", "status": "False", "reason": "QualityCheckFailed", "message": "mean radius max: 250",
         "lastTransitionTime": "2026-03-01T12:00:00Z"}])
    d = decide(b, logic.World(feature_set=failed))
    assert d.model_version is None and "active" not in d.status
    assert d.status["lastTriggered"]["outcome"] == "SnapshotFailed"
    warning = next(e for e in d.events if e.reason == "RetrainFailed")
    assert "mean radius max: 250" in warning.message


def test_given_a_template_pinned_to_a_snapshot_then_no_fresh_snapshot_is_asked_for():
    b = fresh_body({"pendingAlerts": [alert()]})
    b["spec"]["template"] = {"training": {**FS_TEMPLATE["training"], "featureSet": {"name": "bc-features",
                                                                                 "version": "v1"}}}
    d = decide(b, logic.World(feature_set=FS))
    assert d.status["lastTriggered"]["outcome"] == "Creating" and "snapshotRequest" not in d.status["lastTriggered"]


# ------------------------------------------------------------------------------- phase, conditions


@pytest.mark.parametrize("status, spec, problems, phase, ready", [
    ({}, {}, [], "Idle", ("True", "Watching")),
    (COOLING, {}, [], "CoolingDown", ("True", "Watching")),
    ({"active": ["bc-retrain-r1"], **COOLING}, {}, [], "Retraining", ("True", "Watching")),
    ({"active": ["bc-retrain-r1"]}, {"suspend": True}, [], "Suspended", ("False", "Suspended")),
    ({}, {}, [Problem("ModelDeploymentNotFound", "spec.template.gates...: not found")], "Failed",
     ("False", "ModelDeploymentNotFound")),
])
def test_given_the_state_then_phase_and_ready_say_it(status, spec, problems, phase, ready):
    st = {"observedGeneration": 1, **status}
    d = decide(body(st, **spec), world_with(*(mine(n) for n in status.get("active", [])), problems=problems))
    assert d.status["phase"] == phase and cond(d, "Ready") == ready
    assert cond(d, "InvalidSpec") == (("True", problems[0].reason) if problems else ("False", "Valid"))


def test_given_the_validate_only_conditions_and_a_retrying_one_then_accepted_goes_and_retrying_clears():
    old = [{"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": "2026-03-01T11:00:00Z"}
           for t, r in (("Accepted", "Accepted"), ("Retrying", "Forbidden"))]
    d = decide(body({"observedGeneration": 1, "conditions": old}))
    assert cond(d, "Accepted") is None and cond(d, "Retrying") == ("False", "Recovered")


def test_given_history_limit_lowered_then_history_is_cut_to_it():
    history = [{"at": "2026-03-01T11:00:00Z", "source": "manual", "outcome": "CoolingDown", "detail": str(i)}
               for i in range(6)]
    d = decide(body({"observedGeneration": 1, "history": history}, historyLimit=2))
    assert [h["detail"] for h in d.status["history"]] == ["4", "5"]


def test_given_an_unchanged_idle_policy_then_a_second_pass_changes_nothing():
    b = body({})
    d = decide(b)
    assert decide(then(b, d)).status == d.status


# ----------------------------------------------------------------------------------------- builder


def test_given_a_long_policy_name_then_the_modelversion_name_is_shortened_deterministically():
    name = model_version_name("p" * 70, 12)
    assert len(name) <= 63 and name == model_version_name("p" * 70, 12) != model_version_name("p" * 70, 13)


def test_given_a_template_without_gates_then_the_manifest_has_none():
    template = ModelVersionTemplate.model_validate({"training": TEMPLATE["training"]})
    mv = build_model_version(RetrainInput("bc", "ns", "u", "m", template, "bc-r1", "schedule", "x" * 5000))
    assert "gates" not in mv["spec"] and len(mv["metadata"]["annotations"]["mlops.dev/trigger-detail"]) == 1024
    assert mv["metadata"]["labels"] == {"mlops.dev/retrainpolicy": "bc", "mlops.dev/trigger": "schedule"}
