"""HyperparameterSearch: a timer drives the one-step-per-pass loop of ``logic.hyperparametersearch``; this is the I/O.

Reads exactly what ``needs`` asks for — the template's referenced objects and the trial ModelVersions that
are active, newest, or about to be registered — then creates the trial ModelVersion the decision asks for
(AlreadyExists is success: the next pass reads whose it is) and applies its label patches. Trials are
trained by the ModelVersion controller; nothing here touches Jobs.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearch
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, register, unparseable
from mlops_operator.handlers.references import resolve
from mlops_operator.logic import deletion
from mlops_operator.logic import hyperparametersearch as logic
from mlops_operator.providers import kube

KIND, PLURAL = "HyperparameterSearch", "hyperparametersearches"
MODELVERSIONS = "modelversions"


async def observe(namespace: str, need: logic.Needs) -> logic.World:
    _, problems = await resolve(need.references, namespace)
    trials = {name: await kube.get_custom(MODELVERSIONS, namespace, name) for name in need.trials}
    return logic.World(problems=problems, trials=trials)


async def patch_labels(namespace: str, patch: logic.LabelPatch) -> None:
    """Merge-patch one ModelVersion's labels; removing a label from a deleted version is success."""
    try:
        await kube.patch_metadata(MODELVERSIONS, namespace, patch.name, labels=patch.labels)
    except kube.KubeError as exc:
        if not (exc.status == 404 and all(v is None for v in patch.labels.values())):
            raise


async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
    """One pass over one HyperparameterSearch."""
    try:
        hps = HyperparameterSearch.from_body(obj)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    namespace = hps.metadata["namespace"]
    status = obj.get("status") or {}
    try:
        world = await observe(namespace, logic.needs(hps, status))
        decision = logic.decide(hps, status, world, ctx.now)
        for mv in decision.create:
            await kube.create(kube.custom_path(MODELVERSIONS, namespace), mv)
        for patch in decision.labels:
            await patch_labels(namespace, patch)
        for name in decision.annotate:
            await kube.patch_metadata(MODELVERSIONS, namespace, name, annotations={deletion.DELETE_ARTIFACTS: "true"})
        for name, uid in decision.delete:
            await kube.delete(kube.custom_path(MODELVERSIONS, namespace, name), uid=uid)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    # A create (even one answered AlreadyExists), a label or annotation patch or a delete changed the world:
    # look again at once.
    acted = bool(decision.create or decision.labels or decision.annotate or decision.delete)
    return Outcome(status=decision.status, events=decision.events, acted=acted)


register(KIND, PLURAL, step, on_change=("spec",))
