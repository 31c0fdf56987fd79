"""The autoscaler and disruption budget of a ModelDeployment's servers, and the replicas hand-over (I/O only).

- ``serving.autoscaling``: a HorizontalPodAutoscaler ``mdep-<name>`` on the stable version's Deployment,
  applied every pass (so a promotion re-points it). The rollout plans the stable version without
  replicas; ``hand_over_replicas`` first gives ``spec.replicas`` to a second field manager.
- ``serving.podDisruptionBudget``: a PodDisruptionBudget ``mdep-<name>`` over every version's servers.
What to apply, hand over and delete is decided in ``logic.rollout.workloads``.
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders import autoscaling as build
from mlops_operator.logic.rollout.workloads import HPA, PDB, CompanionPlan
from mlops_operator.providers import kube
from mlops_operator.providers.kube import apply_object, resource_path

_API = {HPA: "autoscaling/v2", PDB: "policy/v1"}
HANDOVER_MANAGER = "mlops-operator-handover"


async def hand_over_replicas(namespace: str, deployment: str, replicas: int) -> None:
    """Keep ``spec.replicas`` at its current value while the operator's own apply stops setting it."""
    await apply_object({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": deployment, "namespace": namespace},
                        "spec": {"replicas": replicas}}, manager=HANDOVER_MANAGER)


async def apply_companions(owner: Mapping[str, Any], model: str, plan: CompanionPlan) -> None:
    """Apply the autoscaler and the budget ``plan`` asks for; delete the kinds it lists."""
    namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]

    async def delete(kind: str) -> None:
        await kube.delete(resource_path(_API[kind], kind, namespace, build.autoscaling_name(name)))

    if plan.autoscaler_target is not None and plan.autoscaling is not None:
        await apply_object(build.build_hpa(owner, model, plan.autoscaler_target, plan.autoscaling))
    elif HPA in plan.delete:
        await delete(HPA)
    if plan.budget is not None:
        await apply_object(build.build_pdb(owner, model, plan.budget))
    elif PDB in plan.delete:
        await delete(PDB)
