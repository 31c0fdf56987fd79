"""RetrainPolicy: when to train a new ModelVersion of a model — on alerts, a schedule, a metric or new
features — bounded by a cooldown and a concurrency limit so an alert storm trains once, not fifty times.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    CelRule,
    KindInfo,
    KubeObject,
    PrinterColumn,
    RetrainPolicyPhase,
    StatusBase,
    StatusModel,
)
from mlops_operator.api.v1alpha1.primitives import Cron, Duration, ModelName
from mlops_operator.api.v1alpha1.training import ModelVersionTemplate

MAX_ACTIVE = 10


class AlertTrigger(ApiModel):
    """Retrain when a firing alert carries all these labels."""

    match_labels: dict[str, str] = Field(
        min_length=1, max_length=16, description="Labels the alert must have, e.g. {alertname: MLOpsFeatureDriftHigh}."
    )


class ComparisonOp(StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class MetricTrigger(ApiModel):
    """Retrain when a PromQL value crosses a threshold for a while."""

    query: str = Field(min_length=1, max_length=4096, description="PromQL returning one value.")
    op: ComparisonOp = Field(description="Comparison of value with threshold: <, <=, > or >=.")
    threshold: float = Field(description="The threshold.")
    for_: Duration = Field("0s", alias="for", description="How long the condition must hold, e.g. 10m.")
    interval: Duration = Field("1m", description="How often the query runs.")


class Triggers(ApiModel):
    """What starts a retrain (at least one)."""

    alerts: list[AlertTrigger] | None = Field(None, max_length=16, description="Alertmanager alerts (webhook /alerts).")
    schedule: Cron | None = Field(None, description='Cron schedule, e.g. "0 3 * * 0".')
    metric: MetricTrigger | None = Field(None, description="A Prometheus metric crossing a threshold.")
    on_feature_set_update: bool = Field(
        False, description="Retrain when the template's FeatureSet publishes a new snapshot."
    )

    cel_rules = (
        CelRule("(has(self.alerts) && size(self.alerts) > 0) || has(self.schedule) || has(self.metric) || "
                "(has(self.onFeatureSetUpdate) && self.onFeatureSetUpdate)",
                "triggers needs at least one of alerts, schedule, metric or onFeatureSetUpdate",
                lambda t: bool(t.alerts) or t.schedule is not None or t.metric is not None or t.on_feature_set_update),
    )


class RetrainPolicySpec(ApiModel):
    """Desired retraining of a model."""

    model: ModelName = Field(description="Model to retrain (spec.model of the created ModelVersions).")
    template: ModelVersionTemplate = Field(description="Training and gates of every created ModelVersion.")
    triggers: Triggers = Field(description="What starts a retrain.")
    cooldown: Duration = Field("1h", description="Minimum time between two retrains.")
    max_concurrent: int = Field(1, ge=1, le=MAX_ACTIVE, description="Retrains running at once.")
    history_limit: int = Field(
        10, ge=1, le=100,
        description="Trigger records kept in status.history, and finished ModelVersions created by this policy kept: "
                    "older ones are deleted, never one a ModelDeployment may serve nor the newest Ready one.",
    )
    delete_artifacts: bool = Field(
        False,
        description='Created ModelVersions carry mlops.dev/delete-artifacts: "true", so their trained artifacts are '
                    "deleted with them (by historyLimit or by hand); false keeps the artifacts of deleted versions.",
    )
    suspend: bool = Field(False, description="Record triggers but start no retrain.")

    cel_rules = (
        CelRule("!has(self.triggers.onFeatureSetUpdate) || !self.triggers.onFeatureSetUpdate || "
                "has(self.template.training.featureSet)",
                "triggers.onFeatureSetUpdate needs template.training.featureSet",
                lambda s: not s.triggers.on_feature_set_update or s.template.training.feature_set is not None,
                field_path=".triggers.onFeatureSetUpdate"),
    )


class TriggerSource(StrEnum):
    ALERT = "alert"
    SCHEDULE = "schedule"
    METRIC = "metric"
    FEATURE_SET = "featureSet"
    MANUAL = "manual"


class TriggerRecord(StatusModel):
    """One trigger, acted on or not."""

    at: datetime = Field(description="When the trigger was recorded.")
    source: TriggerSource = Field(description="alert, schedule, metric, featureSet or manual.")
    detail: str | None = Field(None, max_length=1024, description="E.g. the alert name and labels.")
    fingerprint: str | None = Field(
        None, max_length=256, description="Deduplication key (alert fingerprint + startsAt)."
    )
    model_version: str | None = Field(None, description="ModelVersion created, if any.")
    outcome: str | None = Field(
        None, max_length=256, description="E.g. Refreshing, Creating, Created, CoolingDown, Suspended, MaxConcurrent."
    )
    snapshot_request: str | None = Field(
        None, max_length=253,
        description="The mlops.dev/materialize request this retrain put on its FeatureSet for fresh data.",
    )
    feature_set_version: str | None = Field(
        None, max_length=64, description="The FeatureSet snapshot the retrain is pinned to (it triggered it, or "
                                         "was materialized for it).",
    )


class PendingAlert(StatusModel):
    """A firing alert the webhook matched to this policy, waiting for the reconciler to act on it."""

    fingerprint: str = Field(max_length=256, description="Alertmanager's fingerprint of the alert.")
    starts_at: str = Field(max_length=64, description="The alert's startsAt: a new firing of the same alert is a new trigger.")
    alertname: str | None = Field(None, max_length=256, description="The alert's alertname label.")
    labels: dict[str, str] | None = Field(None, max_length=32, description="The alert's labels.")
    received_at: datetime = Field(description="When the webhook received it.")


MAX_PENDING_ALERTS = 50


class MetricCheck(StatusModel):
    """The metric trigger's last query (it runs every triggers.metric.interval, not on every pass)."""

    at: datetime = Field(description="When the query last ran.")
    value: float | None = Field(
        None, description="The value it returned; absent when there was none usable (see condition MetricAvailable)."
    )


class RetrainPolicyStatus(StatusBase):
    """Observed state of a RetrainPolicy."""

    phase: RetrainPolicyPhase | None = Field(None, description="Idle, Retraining, CoolingDown, Suspended or Failed.")
    last_triggered: TriggerRecord | None = Field(None, description="The last trigger that started a retrain.")
    active: list[str] | None = Field(None, max_length=MAX_ACTIVE, description="ModelVersions being trained.")
    history: list[TriggerRecord] | None = Field(None, max_length=100, description="Recent triggers, newest last.")
    next_scheduled_at: datetime | None = Field(None, description="Next scheduled retrain.")
    last_scheduled_at: datetime | None = Field(
        None, description="Schedule slot last handled (no double fire after a restart)."
    )
    metric_breach_since: datetime | None = Field(None, description="Since when the metric trigger's condition holds.")
    last_metric_check: MetricCheck | None = Field(None, description="The metric trigger's last query and value.")
    cooldown_until: datetime | None = Field(None, description="No retrain starts before this time.")
    pending_alerts: list[PendingAlert] | None = Field(
        None, max_length=MAX_PENDING_ALERTS,
        description="Firing alerts recorded by the /alerts webhook, not yet acted on (oldest first).",
    )
    handled_request: str | None = Field(
        None, description="Last handled value of the mlops.dev/retrain annotation (a manual trigger acts once)."
    )
    last_feature_set_version: str | None = Field(
        None, description="FeatureSet snapshot the last retrain (or the policy's creation) saw, for onFeatureSetUpdate."
    )
    retrains: int | None = Field(None, ge=0, description="ModelVersions created so far (numbers their names).")


class RetrainPolicy(KubeObject):
    """Retrains a model on alerts, a schedule, a metric or new features."""

    kind: Literal["RetrainPolicy"] = Field("RetrainPolicy", description="RetrainPolicy.")
    spec: RetrainPolicySpec = Field(description="Desired retraining.")
    status: RetrainPolicyStatus = Field(default_factory=RetrainPolicyStatus, description="Observed state.")


KIND_INFO = KindInfo(
    kind="RetrainPolicy",
    plural="retrainpolicies",
    singular="retrainpolicy",
    short_names=("rp",),
    model=RetrainPolicy,
    spec_model=RetrainPolicySpec,
    status_model=RetrainPolicyStatus,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.model", "Model retrained."),
        PrinterColumn("Phase", "string", ".status.phase", "Idle, Retraining, CoolingDown, Suspended or Failed."),
        PrinterColumn("Last-Trigger", "string", ".status.lastTriggered.source", "Source of the last retrain."),
        PrinterColumn("Triggered", "date", ".status.lastTriggered.at", "When the last retrain started."),
        PrinterColumn("Next", "date", ".status.nextScheduledAt", "Next scheduled retrain.", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
