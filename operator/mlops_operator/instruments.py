"""The operator's own Prometheus instruments, served on ``/metrics`` by ``web``.

Module-level with few labels (kind, result, reason), as in the KServe model server: cardinality stays
fixed no matter how many objects exist. The handlers count reconcile passes and Jobs here, the webhook
counts alerts, the leader election counts transitions; the per-ModelDeployment rollout gauges live in
``rollout_metrics``. Names and labels are part of the contract alert rules and dashboards read
(docs/architecture.md, "Metrics: names and labels").
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mlops_operator.logic import alerts as alert_logic

RECONCILES = Counter(
    "mlops_operator_reconciles_total",
    "Reconcile passes by kind and result (changed, unchanged, retrying, failed).",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "mlops_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, including API and storage calls.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_CREATED = Counter(
    "mlops_operator_jobs_created_total",
    "Jobs created by the operator (AlreadyExists is not counted), by the kind that owns them.",
    ["kind"],
)


ALERT_REQUESTS = Counter(
    "mlops_operator_alert_requests_total",
    "Alertmanager webhook calls by HTTP status code.",
    ["code"],
)
ALERTS_RECORDED = Counter(
    "mlops_operator_alerts_recorded_total",
    "Firing alerts newly recorded on a RetrainPolicy (duplicates are not counted).",
)
ALERTS_IGNORED = Counter(
    "mlops_operator_alerts_ignored_total",
    "Firing alerts in webhook calls that triggered nothing, by reason (no_namespace, invalid_namespace, "
    "namespace_not_watched, no_matching_policy); Alertmanager's re-sends count again.",
    ["reason"],
)
for _reason in alert_logic.IGNORE_REASONS:  # every reason exported from the start, at 0
    ALERTS_IGNORED.labels(_reason)

LEADER = Gauge(
    "mlops_operator_leader",
    "1 while this replica holds the leader Lease and acts, 0 while it stands by.",
    ["pod"],
)
LEADER_TRANSITIONS = Counter(
    "mlops_operator_leader_transitions_total",
    "Leadership changes of this replica: acquired (took the Lease), lost (renewals failed or deposed: the "
    "process exits), released (clean shutdown hands the Lease over).",
    ["event"],
)
for _event in ("acquired", "lost", "released"):
    LEADER_TRANSITIONS.labels(_event)
LEADERLESS_SECONDS = Histogram(
    "mlops_operator_leaderless_seconds",
    "Seconds without a leader, observed by the replica that took over: from the previous holder's last "
    "renewal (or release) to the takeover.",
    buckets=(0.5, 1, 2, 3, 5, 8, 10, 13, 15, 18, 20, 25, 30, 45, 60, 120),
)
