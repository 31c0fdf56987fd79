"""The rollout gauges: one series set per ModelDeployment, read from its status, gone when it is deleted."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from mlops_operator import rollout_metrics

pytestmark = pytest.mark.unit

STATUS = {"phase": "Progressing", "stableVersion": "v1", "candidateVersion": "v2", "canaryWeight": 30,
          "analysis": [{"at": "2025-01-01T00:00:00Z", "metric": "error-rate", "value": 0.5, "passed": False},
                       {"at": "2025-01-01T00:00:30Z", "metric": "error-rate", "value": 0.01, "passed": True},
                       {"at": "2025-01-01T00:00:30Z", "metric": "latency", "passed": False}],
          "history": [{"version": "v0", "event": "rolledBack"}, {"version": "v1", "event": "promoted"}]}


def _value(series: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(series, labels)


def test_given_a_canary_status_when_recorded_then_phase_weights_last_runs_and_rollbacks_are_gauges():
    rollout_metrics.record("team-a", "bc", STATUS)
    phase = "mlops_operator_modeldeployment_phase"
    assert _value(phase, namespace="team-a", name="bc", phase="Progressing") == 1
    assert _value(phase, namespace="team-a", name="bc", phase="Succeeded") == 0
    weight = "mlops_operator_modeldeployment_weight"
    assert _value(weight, namespace="team-a", name="bc", role="candidate") == 30
    assert _value(weight, namespace="team-a", name="bc", role="stable") == 70
    passed = "mlops_operator_modeldeployment_analysis_passed"
    assert _value(passed, namespace="team-a", name="bc", metric="error-rate") == 1   # the latest run counts
    assert _value(passed, namespace="team-a", name="bc", metric="latency") == 0
    assert _value("mlops_operator_modeldeployment_analysis_value", namespace="team-a", name="bc",
                  metric="error-rate") == 0.01
    assert _value("mlops_operator_modeldeployment_rollbacks", namespace="team-a", name="bc") == 1


def test_given_equal_names_in_two_namespaces_when_one_is_forgotten_then_only_its_series_go():
    rollout_metrics.record("team-a", "same", {"phase": "Succeeded", "stableVersion": "v1"})
    rollout_metrics.record("team-b", "same", {"phase": "RolledBack", "stableVersion": "v1"})
    rollout_metrics.forget("team-a", "same")
    phase = "mlops_operator_modeldeployment_phase"
    assert _value(phase, namespace="team-a", name="same", phase="Succeeded") is None
    assert _value(phase, namespace="team-b", name="same", phase="RolledBack") == 1
    assert _value("mlops_operator_modeldeployment_weight", namespace="team-b", name="same", role="stable") == 100


def test_given_a_promotion_when_recorded_then_the_candidate_weight_returns_to_zero():
    rollout_metrics.record("team-c", "bc", STATUS)
    rollout_metrics.record("team-c", "bc", {"phase": "Succeeded", "stableVersion": "v2"})
    assert _value("mlops_operator_modeldeployment_weight", namespace="team-c", name="bc", role="candidate") == 0
    assert _value("mlops_operator_modeldeployment_phase", namespace="team-c", name="bc", phase="Progressing") == 0
