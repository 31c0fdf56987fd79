"""The autoscaler and disruption budget of a ModelDeployment's servers, and the replicas hand-over.

- ``serving.autoscaling``: a HorizontalPodAutoscaler ``mdep-<name>`` on the stable version's Deployment,
  applied every pass (so a promotion re-points it). The rollout plans the stable version without
  replicas; ``hand_over_replicas`` first gives ``spec.replicas`` to a second field manager, because a
  server-side apply that drops a field its manager owned resets it (a Deployment to 1 replica).
- ``serving.podDisruptionBudget``: a PodDisruptionBudget ``mdep-<name>`` over every version's servers.
- Each serving Deployment carries the kinds made beside it (``mlops.dev/companions``); when the spec stops
  asking for one, the next pass deletes it, so nothing is read every pass just to find out.
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders import autoscaling as build
from mlops_operator.logic.rollout.state import Observations
from mlops_operator.providers import kube
from mlops_operator.providers.traffic.base import apply_object, resource_path

HPA, PDB = "HorizontalPodAutoscaler", "PodDisruptionBudget"
_API = {HPA: "autoscaling/v2", PDB: "policy/v1"}
HANDOVER_MANAGER = "mlops-operator-handover"


def _autoscaling(spec: ModelDeploymentSpec):
    serving = spec.serving
    return serving.autoscaling if serving is not None and serving.runtime == "builtin" else None


def companions(spec: ModelDeploymentSpec) -> tuple[str, ...]:
    """The kinds ``spec`` asks for beside the servers."""
    budget = spec.serving.pod_disruption_budget if spec.serving else None
    return tuple(kind for kind, wanted in ((HPA, _autoscaling(spec)), (PDB, budget)) if wanted is not None)


async def hand_over_replicas(namespace: str, deployment: str, replicas: int) -> None:
    """Keep ``spec.replicas`` at its current value while the operator's own apply stops setting it."""
    await apply_object({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": deployment, "namespace": namespace},
                        "spec": {"replicas": replicas}}, manager=HANDOVER_MANAGER)


async def apply_companions(owner: Mapping[str, Any], spec: ModelDeploymentSpec, stable: str | None,
                           obs: Observations) -> None:
    """Apply the autoscaler (once stable's Deployment exists) and the budget; delete what is no longer asked."""
    namespace, name = obs.namespace, obs.name
    had = frozenset().union(*(w.companions for w in obs.workloads.values()))
    scaling, budget = _autoscaling(spec), spec.serving.pod_disruption_budget if spec.serving else None
    if scaling is not None:
        if stable and stable in obs.workloads:
            await apply_object(build.build_hpa(owner, spec.model, stable, scaling))
    elif HPA in had:
        await kube.delete(resource_path(_API[HPA], HPA, namespace, build.autoscaling_name(name)))
    if budget is not None:
        await apply_object(build.build_pdb(owner, spec.model, budget))
    elif PDB in had:
        await kube.delete(resource_path(_API[PDB], PDB, namespace, build.autoscaling_name(name)))
