"""API failures become conditions with a back-off (never a crash loop); unreadable objects say why."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import pytest
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, next_pass_in, reconcile_tick, unparseable
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
    ctx = _ctx(failures=2)
    outcome = kube_trouble(OBJ, ctx, exc)
    cond = get_condition(outcome.status["conditions"], "Retrying")
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", reason, 2)
    assert outcome.status["phase"] == "Pending"  # nothing else is touched
    assert outcome.retry and ctx.backoff() == 20 and [e.reason for e in outcome.events] == [reason]


def test_given_object_the_models_cannot_read_when_recorded_then_invalid_spec_schema_mismatch():
    with pytest.raises(ValidationError) as err:
        ModelVersion.from_body({"spec": {"model": "Not A Name"}})
    outcome = unparseable(OBJ, _ctx(), err.value)
    cond = get_condition(outcome.status["conditions"], "InvalidSpec")
    assert (cond["status"], cond["reason"]) == ("True", "SchemaMismatch")
    assert "spec.model" in cond["message"] and not outcome.retry


# --- when the next pass runs: the timer interval, or sooner when a step asked for it ----------------------


@pytest.mark.parametrize("interval, requeue_after, expected", [
    (10.0, None, 10.0),   # nothing due: the level-triggered interval
    (10.0, 3.0, 3.0),     # a router pod expected Ready: look again sooner
    (10.0, 30.0, 10.0),   # a step ends later: the interval still re-checks the world meanwhile
    (10.0, 0.2, 1.0),     # never a hot loop
])
def test_given_a_requeue_hint_when_the_next_pass_is_scheduled_then_it_is_the_sooner_of_hint_and_interval(
        interval, requeue_after, expected):
    assert next_pass_in(interval, requeue_after) == expected


def test_given_a_step_that_asks_to_be_requeued_when_passes_ran_then_a_gated_tick_waits_until_it_is_due(monkeypatch):
    calls: list[float] = []

    async def step(obj: dict, ctx: Context) -> Outcome:
        calls.append(time.monotonic())
        return Outcome(status=obj.get("status") or {}, requeue_after=3.0)

    async def patch_status(plural, namespace, name, delta, resource_version=None):
        return {**OBJ, "status": {**OBJ["status"], **delta}}

    monkeypatch.setattr(kube, "patch_status", patch_status)
    memo: dict = {}
    body = {**OBJ, "metadata": {**OBJ["metadata"], "resourceVersion": "1"}}
    before = time.monotonic()
    asyncio.run(reconcile_tick("ModelVersion", "modelversions", body, memo, logging.getLogger("test"), step, gated=True))
    assert len(calls) == 2  # the first pass wrote Reconciling/Stalled, the second changed nothing
    assert before + 3.0 <= memo["mlops_next_pass"] <= time.monotonic() + 3.0
    asyncio.run(reconcile_tick("ModelVersion", "modelversions", body, memo, logging.getLogger("test"), step, gated=True))
    assert len(calls) == 2  # not due yet: no pass, no API call
    memo["mlops_next_pass"] = time.monotonic() - 0.1
    asyncio.run(reconcile_tick("ModelVersion", "modelversions", body, memo, logging.getLogger("test"), step, gated=True))
    assert len(calls) >= 3


def test_given_a_rollout_pass_that_names_its_next_moment_when_stepped_then_the_outcome_carries_it(monkeypatch):
    from mlops_operator.handlers import rollout
    from mlops_operator.logic.rollout.state import Plan
    from mlops_operator.providers.traffic.base import Served

    class Traffic:
        async def observe(self) -> Served:
            return Served(workloads={}, entry=None, routes=None)

        async def apply(self, plan, obs) -> list:
            return []

    monkeypatch.setattr(rollout.rollout, "decide", lambda spec, status, obs, now: Plan({"phase": "Progressing"},
                                                                                        requeue_after=3.0))
    reconciler = rollout.rollout_reconciler(rollout.RolloutProviders(traffic=lambda ctx: Traffic()),
                                            lambda ctx: lambda key: ())
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "bc", "namespace": "team-a", "generation": 1},
            "spec": {"model": "breast-cancer", "version": "v1"}}
    outcome = asyncio.run(reconciler.step(body, _ctx()))
    assert outcome.requeue_after == 3.0 and not outcome.retry
