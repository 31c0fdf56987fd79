"""ModelVersion: a timer drives the one-step-per-pass loop (deletion and its protection: ``handlers.deletion``).

The handler is glue: parse the body, observe what the phase needs, let ``logic.modelversion.decide``
choose the step, create the Job it asks for (AlreadyExists is success), hand the new status back to the
pass loop. The Job name is a pure function of the ModelVersion, so "record it before creating it" holds by
construction: a crash after the create finds the same Job on the next pass and records it then.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import GROUP, VERSION
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.observe import create_job, job_settings, observe
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, reconcile_tick, unparseable
from mlops_operator.logic import modelversion as logic
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube

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
