"""API failures become conditions with a back-off (never a crash loop); unreadable objects say why."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.reconciler import Context, kube_trouble, unparseable
from mlops_operator.operator_settings import OperatorSettings
from mlops_operator.providers import kube

pytestmark = pytest.mark.unit

OBJ = {"metadata": {"name": "bc-v1", "namespace": "team-a", "generation": 2}, "status": {"phase": "Pending"}}


def _ctx(failures: int = 0) -> Context:
    return Context(kind="ModelVersion", plural="modelversions", now=datetime(2026, 3, 1, tzinfo=timezone.utc),
                   settings=OperatorSettings(retry_base_delay=5, retry_max_delay=60),
                   logger=logging.getLogger("test"), failures=failures)


@pytest.mark.parametrize("status, expected", [
    (401, kube.Forbidden), (403, kube.Forbidden), (409, kube.Conflict), (422, kube.Invalid),
    (400, kube.Invalid), (429, kube.Unavailable), (500, kube.Unavailable), (503, kube.Unavailable),
])
def test_given_api_status_when_translated_then_the_exception_handlers_act_on(status, expected):
    exc = ApiException(status=status, reason="r")
    exc.body = '{"message": "jobs.batch is forbidden: User cannot create"}'
    translated = kube._translate(exc, "POST /apis/batch/v1/namespaces/a/jobs")
    assert type(translated) is expected and translated.status == status
    assert "jobs.batch is forbidden" in str(translated)


def test_given_connection_error_when_translated_then_unavailable():
    assert isinstance(kube._translate(ConnectionRefusedError(), "GET /"), kube.Unavailable)


@pytest.mark.parametrize("exc, reason", [
    (kube.Forbidden("jobs.batch is forbidden", 403), "Forbidden"),
    (kube.Unavailable("apiserver unreachable"), "ApiUnavailable"),
    (kube.Invalid("bad", 422), "ApiRejected"),
])
def test_given_api_failure_when_recorded_then_retrying_condition_event_and_backoff(exc, reason):
    outcome = kube_trouble(OBJ, _ctx(failures=2), exc)
    cond = get_condition(outcome.status["conditions"], "Retrying")
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", reason, 2)
    assert outcome.status["phase"] == "Pending"  # nothing else is touched
    assert outcome.retry_after == 20 and [e.reason for e in outcome.events] == [reason]


def test_given_object_the_models_cannot_read_when_recorded_then_invalid_spec_schema_mismatch():
    with pytest.raises(ValidationError) as err:
        ModelVersion.from_body({"spec": {"model": "Not A Name"}})
    outcome = unparseable(OBJ, _ctx(), err.value)
    cond = get_condition(outcome.status["conditions"], "InvalidSpec")
    assert (cond["status"], cond["reason"]) == ("True", "SchemaMismatch")
    assert "spec.model" in cond["message"] and outcome.retry_after is None
