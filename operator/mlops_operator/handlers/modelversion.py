"""ModelVersion: a timer drives the one-step-per-pass loop (deletion and its protection: ``handlers.deletion``).

The handler is glue: parse the body, observe what the phase needs, let ``logic.modelversion.decide``
choose the step, create the Job it asks for (AlreadyExists is success), hand the new status back to the
pass loop. The Job name is a pure function of the ModelVersion, so "record it before creating it" holds by
construction: a crash after the create finds the same Job on the next pass and records it then.
"""

from __future__ import annotations

from typing import Any

import kopf

from mlops_operator.api.v1alpha1.common import GROUP, VERSION
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.observe import observe
from mlops_operator.handlers.reconciler import Context, Outcome, job_step, reconcile_tick
from mlops_operator.logic import modelversion as logic
from mlops_operator.operator_settings import operator_settings

KIND, PLURAL = "ModelVersion", "modelversions"


async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
    """One pass over one ModelVersion."""
    async def observe_pass(mv: ModelVersion, _status: dict[str, Any]) -> logic.World:
        return await observe(mv, logic.needs(mv), ctx.settings.s3_secret)

    return await job_step(KIND, obj, ctx, ModelVersion, observe_pass, logic.decide)


_settings = operator_settings()


@kopf.timer(GROUP, VERSION, PLURAL, id="reconcile", interval=_settings.reconcile_interval)
async def reconcile_modelversion(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await reconcile_tick(KIND, PLURAL, body, memo, logger, step)
