"""ModelVersion: a timer drives the one-step-per-pass loop (deletion and its protection: ``handlers.deletion``).

The handler is glue: parse the body, observe what the phase needs, let ``logic.modelversion.decide``
choose the step, create the Job it asks for (AlreadyExists is success), hand the new status back to the
pass loop. The Job name is a pure function of the ModelVersion, so "record it before creating it" holds by
construction: a crash after the create finds the same Job on the next pass and records it then.
"""

from __future__ import annotations


from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.handlers.observe import observe
from mlops_operator.handlers.reconciler import Snapshot, job_reconciler, register
from mlops_operator.logic import modelversion as logic

KIND, PLURAL = "ModelVersion", "modelversions"


async def observe_pass(snap: Snapshot[ModelVersion]) -> logic.World:
    return await observe(snap.model, logic.needs(snap.model), snap.ctx.settings.s3_secret)


RECONCILER = job_reconciler(KIND, PLURAL, ModelVersion.from_body, observe_pass, logic.decide)
step = RECONCILER.step
register(RECONCILER, on_change=())  # the timer alone, no fast path on a change
