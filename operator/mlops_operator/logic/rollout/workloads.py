"""How the planned serving Deployments are applied, beside what the plan says about them. Pure.

- ``serving_autoscaling``: the autoscaler asked for (builtin runtime only: KServe scales its own pods).
- ``hands_over_replicas``: a Deployment planned without replicas (its autoscaler's) whose ``spec.replicas``
  the operator's apply still owns must first give them to a second field manager, because a server-side
  apply that drops a field its manager owned resets it (a Deployment to 1 replica).
- ``kept_compiled_model``: mid-rollout, running pods keep the compiledModel they were launched with (a
  canary compares the two forms, and stable is not restarted under traffic); alone, they follow the spec.
- ``plan_companions``: the autoscaler (once stable's Deployment exists) and the disruption budget to apply,
  and the kinds to delete because the spec stopped asking for them. What was made is read from the serving
  Deployments' companions annotation, so nothing is read every pass just to find out.
- ``kserve_routes``: the routes an InferenceService gets (KServe runs only what its predictor names).
- ``pod_problem`` / ``first_problem``: why a version's pods are not Ready (a missing Secret, an image that does
  not pull, a crash loop, no node), so ``CandidateReady`` says it instead of only ``0/1 Ready``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from mlops_operator.api.v1alpha1.modeldeployment import Autoscaling, DisruptionBudget, ModelDeploymentSpec
from mlops_operator.logic.rollout.state import Observations, Plan, Routes, WorkloadInfo, WorkloadPlan

HPA, PDB = "HorizontalPodAutoscaler", "PodDisruptionBudget"


def serving_autoscaling(spec: ModelDeploymentSpec) -> Autoscaling | None:
    """``spec.serving.autoscaling`` when the builtin runtime serves (KServe scales its own pods)."""
    serving = spec.serving
    return serving.autoscaling if serving is not None and serving.runtime == "builtin" else None


def _budget(spec: ModelDeploymentSpec) -> DisruptionBudget | None:
    return spec.serving.pod_disruption_budget if spec.serving else None


def companions(spec: ModelDeploymentSpec) -> tuple[str, ...]:
    """The kinds ``spec`` asks for beside the servers."""
    return tuple(kind for kind, wanted in ((HPA, serving_autoscaling(spec)), (PDB, _budget(spec)))
                 if wanted is not None)


def hands_over_replicas(planned: WorkloadPlan, seen: WorkloadInfo | None) -> bool:
    """The existing Deployment's replicas must be handed over before the apply leaves them out."""
    return planned.replicas is None and seen is not None and seen.replicas_owned


def kept_compiled_model(planned_count: int, seen: WorkloadInfo | None) -> str | None:
    """The compiledModel running pods keep while another version serves beside them (None: the spec's)."""
    return seen.compiled_model if seen is not None and planned_count > 1 else None


@dataclass(frozen=True)
class CompanionPlan:
    """What to apply and delete beside the servers this pass."""

    autoscaler_target: str | None       # the stable version the autoscaler is applied on; None: not applied
    autoscaling: Autoscaling | None
    budget: DisruptionBudget | None     # None: no budget applied
    delete: tuple[str, ...] = ()        # kinds made before that the spec no longer asks for


def plan_companions(spec: ModelDeploymentSpec, stable: str | None, obs: Observations) -> CompanionPlan:
    """The autoscaler on ``stable`` once its Deployment exists, the budget, and what to delete.

    Worked example: autoscaling asked, stable v1 not observed yet -> nothing applied; once it is -> the
    autoscaler on v1. The spec drops podDisruptionBudget while a Deployment says PDB was made -> delete PDB.
    """
    had = frozenset().union(*(w.companions for w in obs.workloads.values()))
    scaling, budget = serving_autoscaling(spec), _budget(spec)
    target = stable if scaling is not None and stable and stable in obs.workloads else None
    delete = tuple(kind for kind, wanted in ((HPA, scaling), (PDB, budget)) if wanted is None and kind in had)
    return CompanionPlan(autoscaler_target=target, autoscaling=scaling, budget=budget, delete=delete)


def kserve_routes(plan: Plan) -> Routes | None:
    """KServe only runs what its predictor names: a planned candidate is always the latest revision, and
    the first version is served by writing the InferenceService (its readiness is the workload's)."""
    routes = plan.routes
    if routes is None:
        return Routes(plan.workloads[0].version) if plan.workloads else None
    if routes.candidate:
        return routes
    candidate = next((w.version for w in plan.workloads if w.version != routes.stable), None)
    return replace(routes, candidate=candidate, weight=0) if candidate else routes


# Waiting reasons that only mean "starting": not a problem to report.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
MAX_PROBLEM = 300  # characters of a pod's own message kept in a condition


def container_waiting(container_status: Mapping[str, Any]) -> str | None:
    """``<reason>: <message>`` of a container the kubelet cannot start (None while it is merely starting).

    >>> container_waiting({"state": {"waiting": {"reason": "ContainerCreating"}}})
    >>> container_waiting({"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}})
    'ErrImagePull: not found'
    """
    waiting = (container_status.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if not reason or reason in _STARTING:
        return None
    return f"{reason}: {(waiting.get('message') or '').strip()}".rstrip(": ")


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why this serving pod is not Ready, in the words of the kubelet or the scheduler, or None when it is
    simply starting (or Ready). E.g. ``CreateContainerConfigError: secret "mlops-s3" not found``,
    ``ImagePullBackOff: ...``, ``CrashLoopBackOff: exit 1 (Error)`` (the last exit, not the back-off text
    that changes with every restart), ``Unschedulable: 0/1 nodes ...``.
    """
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]:
        text = container_waiting(cs)
        if text is None:
            continue
        reason = cs["state"]["waiting"]["reason"]
        last = (cs.get("lastState") or {}).get("terminated")
        if last and (reason == "CrashLoopBackOff" or text == reason):
            text = f"{reason}: exit {last.get('exitCode')} ({last.get('reason') or 'terminated'})"
        return _bounded(text)
    unscheduled = next((c for c in status.get("conditions") or ()
                        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason")), None)
    if unscheduled is None:
        return None
    return _bounded(f"{unscheduled['reason']}: {(unscheduled.get('message') or '').strip()}".rstrip(": "))


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM else text[: MAX_PROBLEM - 1] + "…"


def first_problem(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The first problem any of ``pods`` reports (pods being deleted left out), in name order."""
    live = sorted((p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")),
                  key=lambda p: (p.get("metadata") or {}).get("name") or "")
    return next((problem for p in live if (problem := pod_problem(p))), None)
