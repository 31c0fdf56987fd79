"""Serving on the operator's own Deployments: what the builtin, gatewayAPI and service routers share.

Each version runs as Deployment + Service ``mdep-<name>-<version>``; what tells them apart is only the
entry point (the builtin router's Deployment, or an entry Service on stable's pods, or nothing of its
own) and where the routes live (the route setter). ``DeploymentServing`` composes the shared part with
those two, so each router module stays a route setter plus, where it has one, its entry point.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Awaitable, Callable, Mapping

from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.builders import serving as build
from mlops_operator.builders.labels import LABEL_COMPONENT
from mlops_operator.builders.names import label_value
from mlops_operator.logic.rollout import workloads as workload_rules
from mlops_operator.logic.rollout.state import EntryInfo, Observations, Plan, Routes, WorkloadInfo
from mlops_operator.logic.status import Event
from mlops_operator.providers import kube
from mlops_operator.providers.kube import apply_object
from mlops_operator.providers.traffic import scaling
from mlops_operator.providers.traffic.base import RouteSetter, Served, ServingContext, TrafficError

EntryApplier = Callable[[ServingContext, Routes], Awaitable[None]]
EntryObserver = Callable[[ServingContext], Awaitable[EntryInfo | None]]


def workload_info(deployment: Mapping[str, Any]) -> WorkloadInfo | None:
    """A serving Deployment as the rollout sees it (None: not one of ours, no version annotation)."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    version = (meta.get("annotations") or {}).get(build.VERSION_ANNOTATION)
    if not version:
        return None
    replicas = spec.get("replicas", 1)
    updated = (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0) and \
        (status.get("updatedReplicas") or 0) >= replicas
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    companions = (meta.get("annotations") or {}).get(build.COMPANIONS_ANNOTATION) or ""
    return WorkloadInfo(version, replicas, status.get("readyReplicas") or 0, pod_labels.get(build.LABEL_ROLE), updated,
                        replicas_owned=_owns_replicas(meta), companions=frozenset(filter(None, companions.split(","))),
                        compiled_model=build.launched_compiled_model(deployment))


def _owns_replicas(meta: Mapping[str, Any]) -> bool:
    """This operator's server-side apply owns ``spec.replicas`` (from ``managedFields``)."""
    return any(entry.get("manager") == kube.FIELD_MANAGER and entry.get("operation") == "Apply"
               and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
               for entry in meta.get("managedFields") or [])


def deployments_path(namespace: str, name: str | None = None) -> str:
    return kube.resource_path("apps/v1", "Deployment", namespace, name)


async def observe_deployments(namespace: str, name: str) -> dict[str, WorkloadInfo]:
    """The serving Deployments of ModelDeployment ``name`` by version (those being deleted left out)."""
    labels = {build.LABEL_MODELDEPLOYMENT: label_value(name), LABEL_COMPONENT: build.SERVING}
    items = await kube.list_items(deployments_path(namespace), kube.selector(labels))
    workloads = {}
    for deployment in items:
        info = None if (deployment.get("metadata") or {}).get("deletionTimestamp") else workload_info(deployment)
        if info is None:
            continue
        if info.ready_replicas < max(1, info.replicas):  # only then: one list of its pods, to say why
            pods = await kube.list_pods(namespace, kube.selector(build.version_selector(name, info.version)))
            info = replace(info, problem=workload_rules.first_problem(pods))
        workloads[info.version] = info
    return workloads


async def apply_workloads(ctx: ServingContext, plan: Plan, obs: Observations) -> list[Event]:
    """Each planned version's Deployment and Service; a version without an artifact keeps what runs."""
    spec, events = ctx.md.spec, list[Event]()
    companions = workload_rules.companions(spec)
    for w in plan.workloads:
        info, seen = obs.versions.get(w.version), obs.workloads.get(w.version)
        if info is None or not info.artifact_uri:
            if seen is None:
                events.append(Event("Warning", "VersionUnavailable", f"{w.version}: no artifact to serve"))
            continue  # an existing Deployment keeps running as it is
        if workload_rules.hands_over_replicas(w, seen):
            await scaling.hand_over_replicas(obs.namespace, build.version_name(obs.name, w.version), seen.replicas)
        await apply_object(build.build_serving_deployment(build.ServingInput(
            owner=ctx.owner, model=spec.model, version=w.version, role=w.role, replicas=w.replicas,
            artifact_uri=info.artifact_uri, artifact_sha256=info.artifact_sha256, image=ctx.image,
            s3_secret=ctx.s3_secret, pod_role=seen.role if seen else None,
            pod_compiled_model=workload_rules.kept_compiled_model(len(plan.workloads), seen),
            image_pull_policy=ctx.image_pull_policy, resources=ctx.resources or {}, pod=ctx.pod,
            companions=companions, progress_deadline_seconds=int(parse_duration(spec.progress_deadline).total_seconds()))))
        await apply_object(build.build_version_service(ctx.owner, spec.model, w.version, w.role))
    return events


async def retire(ctx: ServingContext, plan: Plan, *, preview: bool) -> None:
    """The preview Service (applied when planned and ``preview`` is served, else deleted for BlueGreen, the
    only strategy that makes one), then the Deployments and Services of the versions the plan deletes."""
    strategy = ctx.md.spec.strategy
    if preview and plan.preview:
        await apply_object(build.build_preview_service(ctx.owner, ctx.model, plan.preview))
    elif strategy is not None and strategy.type == "BlueGreen":
        await kube.delete(kube.core_path("services", ctx.namespace, build.preview_name(ctx.name)))
    for version in plan.delete:
        child = build.version_name(ctx.name, version)
        await kube.delete(kube.core_path("services", ctx.namespace, child))
        await kube.delete(deployments_path(ctx.namespace, child))


async def no_entry(ctx: ServingContext, routes: Routes | None = None) -> None:
    """Routers whose entry point is the route setter's own object (or none at all)."""
    return None


class DeploymentServing:
    """A traffic provider on our Deployments: the shared workloads plus one router's entry point and routes."""

    def __init__(self, name: str, ctx: ServingContext, routes: RouteSetter, *,
                 apply_entry: EntryApplier = no_entry, observe_entry: EntryObserver = no_entry):
        self.name, self.ctx, self.routes = name, ctx, routes
        self._apply_entry, self._observe_entry = apply_entry, observe_entry

    async def observe(self) -> Served:
        workloads = await observe_deployments(self.ctx.namespace, self.ctx.name)
        try:
            routes = await self.routes.get_routes()
        except TrafficError:
            routes = None
        return Served(workloads, await self._observe_entry(self.ctx), routes)

    async def apply(self, plan: Plan, obs: Observations) -> list[Event]:
        events = await apply_workloads(self.ctx, plan, obs)
        spec = self.ctx.md.spec
        await scaling.apply_companions(self.ctx.owner, spec.model,
                                       workload_rules.plan_companions(spec, plan.status.get("stableVersion"), obs))
        if plan.routes is not None:
            await self._apply_entry(self.ctx, plan.routes)
            await self.routes.set_routes(plan.routes)
        await retire(self.ctx, plan, preview=True)
        return events
