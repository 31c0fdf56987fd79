"""HyperparameterSearch: a timer drives the one-step-per-pass loop of ``logic.hyperparametersearch``; this is the I/O.

Reads exactly what ``needs`` asks for — the template's referenced objects and the trial ModelVersions that
are active, newest, or about to be registered — then creates the trial ModelVersion the decision asks for
(AlreadyExists is success: the next pass reads whose it is) and applies its label patches. Trials are
trained by the ModelVersion controller; nothing here touches Jobs.
"""

from __future__ import annotations

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearch
from mlops_operator.handlers.reconciler import Reconciler, Snapshot, register
from mlops_operator.handlers.references import resolve
from mlops_operator.logic import deletion
from mlops_operator.logic import hyperparametersearch as logic
from mlops_operator.logic.status import Outcome
from mlops_operator.providers import kube

KIND, PLURAL = "HyperparameterSearch", "hyperparametersearches"
MODELVERSIONS = "modelversions"


async def observe(snap: Snapshot[HyperparameterSearch]) -> logic.World:
    namespace, need = snap.namespace, logic.needs(snap.model, snap.status)
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


def decide(snap: Snapshot[HyperparameterSearch], world: logic.World) -> logic.SearchOutcome:
    return logic.decide(snap.model, snap.status, world, snap.ctx.now)


async def act(snap: Snapshot[HyperparameterSearch], world: logic.World, outcome: logic.SearchOutcome) -> Outcome:
    """Create the trials, move the labels, mark and delete what retention chose, in that order."""
    namespace = snap.namespace
    for mv in outcome.create:
        await kube.create(kube.custom_path(MODELVERSIONS, namespace), mv)
    for patch in outcome.labels:
        await patch_labels(namespace, patch)
    for name in outcome.annotate:
        await kube.patch_metadata(MODELVERSIONS, namespace, name, annotations={deletion.DELETE_ARTIFACTS: "true"})
    for name, uid in outcome.delete:
        await kube.delete(kube.custom_path(MODELVERSIONS, namespace, name), uid=uid)
    # A create (even one answered AlreadyExists), a label or annotation patch or a delete changed the world:
    # look again at once.
    outcome.acted = bool(outcome.create or outcome.labels or outcome.annotate or outcome.delete)
    return outcome


RECONCILER = Reconciler(KIND, PLURAL, HyperparameterSearch.from_body, observe, decide, act)
step = RECONCILER.step
register(RECONCILER, on_change=("spec",))
