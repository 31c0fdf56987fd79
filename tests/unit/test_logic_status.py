"""Status bookkeeping: write only what changed, back off exponentially, Retrying as a condition, and the
kstatus conditions (Reconciling, Stalled) every kind carries."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlops_operator.api.v1alpha1 import KINDS, get_condition
from mlops_operator.logic import argocd_health as argocd_scripts
from mlops_operator.logic.status import (
    PHASE_MEANINGS,
    argocd_health,
    backoff_delay,
    mark_retrying,
    status_delta,
    with_kstatus,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("old, new, delta", [
    ({}, {}, {}),
    ({"phase": "Pending"}, {"phase": "Pending"}, {}),
    ({"phase": "Pending", "stage": "Production"}, {"phase": "Training", "stage": "Production"},
     {"phase": "Training"}),
    ({"phase": "Pending"}, {"phase": "Pending", "lineage": {"job": "j"}}, {"lineage": {"job": "j"}}),
    ({"phase": "Pending", "gateResults": []}, {"phase": "Pending"}, {"gateResults": None}),
    ({"lineage": {"job": "j"}}, {"lineage": {"job": "j", "image": "i"}}, {"lineage": {"job": "j", "image": "i"}}),
])
def test_given_old_and_new_status_when_diffed_then_only_changed_top_level_fields(old, new, delta):
    assert status_delta(old, new) == delta


@pytest.mark.parametrize("failures, delay", [(0, 5), (1, 10), (3, 40), (6, 300), (100, 300), (-1, 5)])
def test_given_consecutive_failures_when_backing_off_then_exponential_and_capped(failures, delay):
    assert backoff_delay(failures, 5, 300) == delay


def test_given_same_trouble_twice_when_marked_retrying_then_one_event_and_no_change():
    status, events = mark_retrying({}, "StorageUnavailable", "minio down", generation=1, now=NOW)
    assert get_condition(status["conditions"], "Retrying")["reason"] == "StorageUnavailable"
    assert len(events) == 1 and events[0].type == "Warning"
    again, events = mark_retrying(status, "StorageUnavailable", "minio down", generation=1, now=NOW)
    assert events == [] and status_delta(status, again) == {}
    other, events = mark_retrying(status, "AccessDenied", "bad key", generation=1, now=NOW)
    assert [e.reason for e in events] == ["AccessDenied"]


# ------------------------------------------------------------------------------- kstatus conventions

KSTATUS_CASES = [
    # (kind, phase, Reconciling, Stalled, Argo CD health)
    ("FeatureSet", "Pending", "True", "False", "Progressing"),
    ("FeatureSet", "Materializing", "True", "False", "Progressing"),
    ("FeatureSet", "Ready", "False", "False", "Healthy"),
    ("FeatureSet", "Failed", "False", "True", "Degraded"),
    ("ModelVersion", "Pending", "True", "False", "Progressing"),
    ("ModelVersion", "Training", "True", "False", "Progressing"),
    ("ModelVersion", "Validating", "True", "False", "Progressing"),
    ("ModelVersion", "Ready", "False", "False", "Healthy"),
    ("ModelVersion", "Rejected", "False", "True", "Degraded"),
    ("ModelVersion", "Failed", "False", "True", "Degraded"),
    ("ModelDeployment", "Pending", "True", "False", "Progressing"),
    ("ModelDeployment", "Progressing", "True", "False", "Progressing"),
    ("ModelDeployment", "Degraded", "True", "False", "Degraded"),  # pods missing: Argo CD's word, still converging
    ("ModelDeployment", "Paused", "False", "False", "Suspended"),
    ("ModelDeployment", "Succeeded", "False", "False", "Healthy"),
    ("ModelDeployment", "RolledBack", "False", "True", "Degraded"),
    ("ModelDeployment", "Failed", "False", "True", "Degraded"),
    ("RetrainPolicy", "Idle", "False", "False", "Healthy"),
    ("RetrainPolicy", "Retraining", "False", "False", "Healthy"),
    ("RetrainPolicy", "CoolingDown", "False", "False", "Healthy"),
    ("RetrainPolicy", "Suspended", "False", "False", "Suspended"),
    ("RetrainPolicy", "Failed", "False", "True", "Degraded"),
    ("HyperparameterSearch", "Pending", "True", "False", "Progressing"),
    ("HyperparameterSearch", "Running", "True", "False", "Progressing"),
    ("HyperparameterSearch", "Succeeded", "False", "False", "Healthy"),
    ("HyperparameterSearch", "Failed", "False", "True", "Degraded"),
    ("BatchPrediction", "Pending", "False", "False", "Healthy"),  # waits for its next trigger
    ("BatchPrediction", "Running", "True", "False", "Progressing"),
    ("BatchPrediction", "Succeeded", "False", "False", "Healthy"),
    ("BatchPrediction", "Failed", "False", "True", "Degraded"),
]


def kstatus_of(status: dict) -> tuple[str, str]:
    conditions = status["conditions"]
    return get_condition(conditions, "Reconciling")["status"], get_condition(conditions, "Stalled")["status"]


def ready_status(phase: str, reason: str = "Why", message: str = "because", generation: int = 3, **extra) -> dict:
    return {"phase": phase, "observedGeneration": generation, "conditions": [
        {"type": "Ready", "status": "False", "reason": reason, "message": message}], **extra}


@pytest.mark.parametrize("kind, phase, reconciling, stalled, argocd", KSTATUS_CASES)
def test_given_each_phase_of_each_kind_when_read_by_kstatus_then_reconciling_or_stalled_as_tabled(
        kind, phase, reconciling, stalled, argocd):
    assert kstatus_of(with_kstatus(kind, ready_status(phase), 3, NOW)) == (reconciling, stalled)


@pytest.mark.parametrize("kind, phase, reconciling, stalled, argocd", KSTATUS_CASES)
def test_given_each_phase_of_each_kind_when_read_for_argocd_then_the_health_as_tabled(
        kind, phase, reconciling, stalled, argocd):
    assert argocd_health(kind, phase) == argocd


def test_given_every_phase_enum_when_tabled_then_the_table_covers_it():
    tabled = {(kind, phase) for kind, phase, *_ in KSTATUS_CASES}
    assert tabled == {(info.kind, phase) for info in KINDS for phase in info.phases}


def test_given_the_chart_when_checked_then_its_argocd_health_scripts_are_rendered_from_the_phase_table():
    assert argocd_scripts.stale_files(Path(__file__).resolve().parents[2]) == [], "run `make crds`"


def test_given_a_terminal_failure_when_stalled_then_ready_reason_and_message_carried():
    status = with_kstatus("ModelVersion", ready_status("Rejected", "GateFailed", "accuracy 0.61 < 0.99"), 3, NOW)
    stalled = get_condition(status["conditions"], "Stalled")
    assert (stalled["reason"], stalled["message"], stalled["observedGeneration"]) == \
        ("GateFailed", "accuracy 0.61 < 0.99", 3)
    assert get_condition(status["conditions"], "Ready")["status"] == "False"  # the kind's own Ready is untouched


def test_given_a_status_behind_the_generation_when_read_then_reconciling_even_if_it_was_failed_before():
    status = with_kstatus("ModelDeployment", ready_status("Succeeded", generation=2), 3, NOW)
    assert kstatus_of(status) == ("True", "False")
    assert get_condition(status["conditions"], "Reconciling")["reason"] == "NewGeneration"


def test_given_a_transient_trouble_when_read_then_reconciling_with_the_trouble_as_reason():
    status, _ = mark_retrying(ready_status("Ready"), "StorageUnavailable", "minio down", generation=3, now=NOW)
    status = with_kstatus("FeatureSet", status, 3, NOW)
    assert kstatus_of(status) == ("True", "False")
    assert get_condition(status["conditions"], "Reconciling")["reason"] == "StorageUnavailable"


def test_given_an_invalid_spec_when_read_then_stalled_with_its_reason():
    status = ready_status("Pending")
    status["conditions"].append({"type": "InvalidSpec", "status": "True", "reason": "VersionNotFound",
                                 "message": "ModelVersion 'bc-v9' not found"})
    status = with_kstatus("ModelDeployment", status, 3, NOW)
    assert kstatus_of(status) == ("False", "True")
    assert get_condition(status["conditions"], "Stalled")["reason"] == "VersionNotFound"


def test_given_no_status_yet_when_read_then_reconciling():
    assert kstatus_of(with_kstatus("HyperparameterSearch", {}, 1, NOW)) == ("True", "False")


def test_given_the_same_verdict_twice_when_recomputed_later_then_nothing_to_write():
    first = with_kstatus("ModelVersion", ready_status("Training"), 3, NOW)
    again = with_kstatus("ModelVersion", first, 3, NOW.replace(hour=13))
    assert status_delta(first, again) == {}
    done = with_kstatus("ModelVersion", {**first, "phase": "Ready"}, 3, NOW.replace(hour=14))
    reconciling = get_condition(done["conditions"], "Reconciling")
    assert reconciling["status"] == "False" and reconciling["lastTransitionTime"] == "2026-03-01T14:00:00Z"


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_every_registered_kind_when_its_phases_are_read_then_the_kstatus_table_knows_the_kind_and_only_its_phases(
        info):
    """A kind added to the registry without a row in PHASE_MEANINGS would fail every status write."""
    meaning = PHASE_MEANINGS[info.kind]
    phases = set(info.phases)
    assert meaning.working <= phases and meaning.failed <= phases and not meaning.working & meaning.failed
    assert meaning.impaired <= meaning.working  # Argo CD's Degraded while kstatus still reconciles
    assert meaning.suspended <= phases - meaning.working - meaning.failed  # settled, waiting on the user
    for phase in phases:  # every phase gets a verdict, and at most one of the two is True
        verdicts = kstatus_of(with_kstatus(info.kind, ready_status(phase), 3, NOW))
        assert verdicts != ("True", "True"), phase
