"""Status bookkeeping: write only what changed, back off exponentially, Retrying as a condition."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.logic.status import backoff_delay, mark_retrying, status_delta

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
