"""Rollout state as Prometheus gauges, one set per ModelDeployment (labelled namespace and name).

Read from the status each pass writes, so they say what ``kubectl get mdep`` says:
- ``mlops_operator_modeldeployment_phase{namespace, name, phase}``: 1 for the current phase, 0 for the others;
- ``mlops_operator_modeldeployment_weight{namespace, name, role}``: percent of traffic on stable/candidate;
- ``mlops_operator_modeldeployment_analysis_passed{namespace, name, metric}``: the last run of each check
  (1 passed, 0 failed), and ``..._analysis_value`` its measured value;
- ``mlops_operator_modeldeployment_rollbacks{namespace, name}``: rollbacks in the status history.
``forget`` drops every series of a deleted ModelDeployment, so deleted objects leave no stale series.
"""

from __future__ import annotations

from typing import Any, Mapping

from prometheus_client import Gauge

from mlops_operator.api.v1alpha1.common import ModelDeploymentPhase

PHASES = tuple(p.value for p in ModelDeploymentPhase)

PHASE = Gauge("mlops_operator_modeldeployment_phase", "1 for the ModelDeployment's current phase, 0 for the others.",
              ["namespace", "name", "phase"])
WEIGHT = Gauge("mlops_operator_modeldeployment_weight", "Percent of traffic on the stable and candidate versions.",
               ["namespace", "name", "role"])
ANALYSIS_PASSED = Gauge("mlops_operator_modeldeployment_analysis_passed",
                        "Last analysis run of each check: 1 passed, 0 failed.", ["namespace", "name", "metric"])
ANALYSIS_VALUE = Gauge("mlops_operator_modeldeployment_analysis_value",
                       "Value measured by the last analysis run of each check.", ["namespace", "name", "metric"])
ROLLBACKS = Gauge("mlops_operator_modeldeployment_rollbacks",
                  "Rollbacks recorded in the ModelDeployment's status history.", ["namespace", "name"])
_SERIES: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}  # what ``forget`` must remove


def _set(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
    gauge.labels(*labels).set(value)
    _SERIES.setdefault(labels[:2], set()).add((gauge, labels))


def record(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Set the gauges of one ModelDeployment from its status."""
    phase = status.get("phase")
    for value in PHASES:
        _set(PHASE, (namespace, name, value), 1 if value == phase else 0)
    candidate = status.get("candidateVersion")
    weight = (status.get("canaryWeight") or 0) if candidate else 0
    _set(WEIGHT, (namespace, name, "candidate"), weight)
    _set(WEIGHT, (namespace, name, "stable"), 100 - weight if status.get("stableVersion") else 0)
    latest: dict[str, Mapping[str, Any]] = {}
    for run in status.get("analysis") or []:
        latest[run.get("metric", "")] = run
    for metric, run in latest.items():
        _set(ANALYSIS_PASSED, (namespace, name, metric), 1 if run.get("passed") else 0)
        if run.get("value") is not None:
            _set(ANALYSIS_VALUE, (namespace, name, metric), run["value"])
    rollbacks = sum(1 for h in status.get("history") or [] if h.get("event") == "rolledBack")
    _set(ROLLBACKS, (namespace, name), rollbacks)


def forget(namespace: str, name: str) -> None:
    """Remove every series of a deleted ModelDeployment."""
    for gauge, labels in _SERIES.pop((namespace, name), set()):
        gauge.remove(*labels)
