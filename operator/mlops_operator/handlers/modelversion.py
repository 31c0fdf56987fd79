"""ModelVersion: a timer drives the one-step-per-pass loop; deletion honours mlops.dev/delete-artifacts.

The handler is glue: parse the body, observe what the phase needs, let ``logic.modelversion.decide``
choose the step, create the Job it asks for (AlreadyExists is success), hand the new status back to the
pass loop. The Job name is a pure function of the ModelVersion, so "record it before creating it" holds by
construction: a crash after the create finds the same Job on the next pass and records it then.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import GROUP, VERSION
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.observe import artifact_prefix, create_job, job_settings, observe, s3_secret, store_for
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, reconcile_tick, unparseable
from mlops_operator.logic import modelversion as logic
from mlops_operator.logic.status import backoff_delay
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube, storage

KIND, PLURAL = "ModelVersion", "modelversions"


async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
    """One pass over one ModelVersion."""
    try:
        mv = ModelVersion.from_body(obj)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    created = False
    try:
        world = await observe(mv, logic.needs(mv), ctx.settings.s3_secret)
        decision = logic.decide(mv, obj.get("status") or {}, world, job_settings(ctx.settings), ctx.now)
        if decision.job is not None:
            created = await create_job(KIND, mv.metadata["namespace"], decision.job)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    return Outcome(status=decision.status, events=decision.events, acted=created,
                   retry_after=ctx.backoff() if decision.retry else None)


_settings = operator_settings()


@kopf.timer(GROUP, VERSION, PLURAL, id="reconcile", interval=_settings.reconcile_interval)
async def reconcile_modelversion(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await reconcile_tick(KIND, PLURAL, body, memo, logger, step)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="artifacts")
async def delete_modelversion(body: kopf.Body, logger: kopf.Logger, retry: int, **_: Any) -> None:
    """The Job goes with the owner reference; the files only when the user asked for it."""
    try:
        mv = ModelVersion.from_body(body)
    except ValidationError as exc:  # never hold the finalizer on an object we cannot read
        logger.warning("artifacts retained: cannot read the object (%s)", exc.errors()[:1])
        return
    delete, why = logic.should_delete_artifacts(mv)
    if not delete:
        logger.info(why)
        return
    namespace = mv.metadata["namespace"]
    delay = backoff_delay(retry, _settings.retry_base_delay, _settings.retry_max_delay)
    secret, problem = await s3_secret(namespace, _settings.s3_secret)
    if secret is None:
        raise kopf.TemporaryError(f"cannot delete artifacts: {problem}", delay=delay)
    prefix = artifact_prefix(mv, secret)
    store = await asyncio.to_thread(store_for, secret)
    delete_version = getattr(store, "delete_version", None)
    if delete_version is None:
        kopf.warn(body, reason="ArtifactsRetained", message=f"{prefix} retained: this storage provider cannot delete")
        return
    try:
        await asyncio.to_thread(delete_version, prefix)
    except storage.StorageError as exc:
        raise kopf.TemporaryError(f"deleting {prefix} failed: {exc}", delay=delay) from exc
    kopf.info(body, reason="ArtifactsDeleted", message=f"deleted {prefix}")
