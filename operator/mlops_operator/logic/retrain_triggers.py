"""What fired a RetrainPolicy in this pass: manual request, alerts, schedule, metric, FeatureSet (pure).

Each detector reads the policy and its working status, records in that status what it consumed or
observed (handledRequest, pendingAlerts removed, lastScheduledAt, lastMetricCheck, metricBreachSince,
lastFeatureSetVersion) and returns its triggers. What a trigger then leads to — a retrain, a
coalesced record, a gate — is ``logic.retrainpolicy``'s; the semantics are in its module docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from croniter import croniter

from mlops_operator.api.v1alpha1.common import format_time
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.builders.retrain import MAX_DETAIL
from mlops_operator.logic.alerts import answered_by_last_retrain
from mlops_operator.logic.analysis import parse_time, render_query
from mlops_operator.logic.featureset import next_run

REQUEST_ANNOTATION = "mlops.dev/retrain"
MANUAL, ALERT, SCHEDULE, METRIC, FEATURE_SET = "manual", "alert", "schedule", "metric", "featureSet"
MAX_FINGERPRINT = 256  # history[].fingerprint
COMPARE = {"<": lambda v, t: v < t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, ">=": lambda v, t: v >= t}

Status = dict[str, Any]
Verdict = tuple[str, str, str]  # the MetricAvailable condition: status, reason, message


@dataclass(frozen=True)
class Trigger:
    source: str
    detail: str
    fingerprint: str | None = None
    level: bool = False   # metric breach / newer snapshot: waits while a gate holds instead of being recorded

    def record(self, at: datetime, outcome: str, model_version: str | None = None) -> dict[str, Any]:
        """Its entry in status.history (and lastTriggered)."""
        rec = {"at": format_time(at), "source": self.source, "detail": self.detail[:MAX_DETAIL],
               "fingerprint": self.fingerprint, "modelVersion": model_version, "outcome": outcome}
        return {k: v for k, v in rec.items() if v is not None}


@dataclass(frozen=True)
class MetricReading:
    """One answer of the metric query: a value (None = no data), or why there is none."""

    value: float | None = None
    problem: str = ""   # reason it could not be answered, e.g. PrometheusUnavailable
    message: str = ""


# ------------------------------------------------------------------------------------------ events


def manual(rp: RetrainPolicy, status: Status) -> list[Trigger]:
    request = (rp.metadata.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if not request or request == status.get("handledRequest"):
        return []
    status["handledRequest"] = request
    return [Trigger(MANUAL, f"{REQUEST_ANNOTATION}={request}")]


def alert_key(alert: Mapping[str, Any]) -> str:
    """The dedup key of an alert in history: ``<fingerprint>@<startsAt>`` (a new firing is a new trigger).

    Cut to the 256 characters ``history[].fingerprint`` holds (Alertmanager's fingerprints have 16).
    """
    return f"{alert.get('fingerprint')}@{alert.get('startsAt')}"[:MAX_FINGERPRINT]


def alerts(status: Status) -> list[Trigger]:
    """Consume every pending alert; one already acted on (its key in history, twice in the list, or started before
    the last retrain started) is dropped."""
    seen = {rec.get("fingerprint") for rec in status.get("history") or []}
    triggers = []
    for alert in status.pop("pendingAlerts", None) or []:
        key = alert_key(alert)
        if key in seen or answered_by_last_retrain(alert.get("startsAt"), status):
            continue
        seen.add(key)
        labels = ", ".join(f"{k}={v}" for k, v in sorted((alert.get("labels") or {}).items()))
        triggers.append(Trigger(ALERT, f"{alert.get('alertname') or 'alert'} {{{labels}}}", fingerprint=key))
    return triggers


def latest_slot(schedule: str, now: datetime) -> datetime:
    """The last time ``schedule`` fired at or before ``now``."""
    prev = croniter(schedule, now).get_prev(datetime)
    following = next_run(schedule, prev)
    return following if following <= now else prev


def schedule(rp: RetrainPolicy, status: Status, now: datetime) -> list[Trigger]:
    """One trigger when a slot fell due since lastScheduledAt (however many were missed); nextScheduledAt."""
    cron = rp.spec.triggers.schedule
    if not cron:
        status.pop("nextScheduledAt", None)
        status.pop("lastScheduledAt", None)  # a schedule added again starts from its next slot
        return []
    last = parse_time(status.get("lastScheduledAt"))
    if last is None and status.get("observedGeneration") is not None:  # added to a policy already running
        last = latest_slot(cron, now)
        status["lastScheduledAt"] = format_time(last)
    base = last or parse_time(rp.metadata.get("creationTimestamp")) or now
    due = next_run(cron, base)
    triggers = []
    if due <= now:
        base = latest_slot(cron, now)
        missed = "" if base == due else f"; earlier slots since {format_time(due)} were missed and fire once"
        status["lastScheduledAt"] = format_time(base)
        triggers.append(Trigger(SCHEDULE, f"schedule {cron!r} slot {format_time(base)}{missed}"))
    status["nextScheduledAt"] = format_time(next_run(cron, base))
    return triggers


# ------------------------------------------------------------------------------------------ levels


def metric_query(rp: RetrainPolicy, status: Mapping[str, Any], now: datetime) -> str | None:
    """The query to run now (``{{namespace}}``, ``{{model}}`` filled in), or None until the interval passed."""
    metric = rp.spec.triggers.metric
    if metric is None:
        return None
    last = parse_time((status.get("lastMetricCheck") or {}).get("at"))
    if last is not None and last <= now < last + parse_duration(metric.interval):
        return None
    return render_query(metric.query, namespace=rp.metadata.get("namespace", ""), model=rp.spec.model, version="")


def observe_metric(rp: RetrainPolicy, status: Status, reading: MetricReading, now: datetime) -> Verdict:
    """Fold a query answer into lastMetricCheck and metricBreachSince; the MetricAvailable verdict.

    Only a finite value can breach; anything else stops the ``for`` clock (a breach must be seen
    continuously, as Prometheus requires of an alert's ``for``).
    """
    metric = rp.spec.triggers.metric
    assert metric is not None
    value, breach = reading.value, False
    if reading.problem:
        verdict, value = ("False", reading.problem, reading.message), None
    elif value is None:
        verdict = ("False", "NoData", f"query {metric.query!r} returned no series")
    elif not math.isfinite(value):
        verdict, value = ("False", "NotANumber", f"query {metric.query!r} returned {value}"), None
    else:
        breach = COMPARE[metric.op](value, metric.threshold)
        verdict = ("True", "Measured", f"value {value:g} ({metric.op} {metric.threshold:g} "
                                       f"{'holds' if breach else 'does not hold'})")
    status["lastMetricCheck"] = {"at": format_time(now), **({"value": value} if value is not None else {})}
    if breach:
        status.setdefault("metricBreachSince", format_time(now))
    else:
        status.pop("metricBreachSince", None)
    return verdict


def metric(rp: RetrainPolicy, status: Status, now: datetime) -> list[Trigger]:
    """A trigger once the breach has held ``for``."""
    spec = rp.spec.triggers.metric
    since = parse_time(status.get("metricBreachSince"))
    if spec is None or since is None or now - since < parse_duration(spec.for_):
        return []
    value = (status.get("lastMetricCheck") or {}).get("value")
    return [Trigger(METRIC, f"{spec.query} = {value} {spec.op} {spec.threshold:g} since {format_time(since)} "
                            f"(for {spec.for_})", level=True)]


def feature_set(rp: RetrainPolicy, status: Status, latest: str | None) -> list[Trigger]:
    """A trigger when the FeatureSet's latest snapshot is not the one last seen; the first one is the baseline."""
    if not rp.spec.triggers.on_feature_set_update:
        status.pop("lastFeatureSetVersion", None)
        return []
    seen = status.get("lastFeatureSetVersion")
    if latest is None or latest == seen:
        return []
    if seen is None:
        status["lastFeatureSetVersion"] = latest
        return []
    name = rp.spec.template.training.feature_set.name
    return [Trigger(FEATURE_SET, f"FeatureSet {name} published {latest} (the last retrain saw {seen})", level=True)]


def satisfy(status: Status, trigger: Trigger, latest: str | None, now: datetime) -> None:
    """A level trigger acted on by a retrain: the breach clock restarts, the snapshot counts as seen."""
    if trigger.source == METRIC:
        status["metricBreachSince"] = format_time(now)
    elif trigger.source == FEATURE_SET:
        status["lastFeatureSetVersion"] = latest
