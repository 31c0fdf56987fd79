"""ModelDeployment reconcile: snapshot the world, ``logic.rollout.decide``, apply the plan, return status.

One call is one pass and takes one step. The order of I/O is what makes it crash-safe:
1. observe: ModelVersions, serving Deployments and Services, the routes read back from the traffic
   router, the builtin router's Deployment (``Succeeded`` waits for a Ready router pod), and (only
   during a rollout or a post-promotion window with checks) whether the metrics provider answers;
2. measure, if the decision says an analysis run is due (results newer than the step or window start);
3. decide (pure);
4. apply: workloads, then router objects, then routes, then the preview Service, then deletions of
   versions no observed route referenced (traffic first, scale-down later), then ModelVersion stages.
If setting routes fails, the decided status is *not* returned: the old status plus a ``Retrying``
condition is, so no step is recorded as taken while traffic does not follow it, and a manual request
(promote/abort/retry) stays unhandled until its action really happened.

Kopf wiring lives with the handlers' owner: call ``reconcile_modeldeployment(body, providers)`` from a
timer (write ``status_patch`` when non-empty, post ``events`` after the write) or use ``rollout_step``
with ``handlers.reconciler.run_passes``.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import is_condition_true, plain
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment, ModelDeploymentSpec
from mlops_operator.api.v1alpha1.pod import PodOverrides, merge_pod_overrides
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.builders import serving as build
from mlops_operator.builders.labels import LABEL_COMPONENT
from mlops_operator.builders.names import label_value
from mlops_operator import rollout_metrics
from mlops_operator.handlers import scaling
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, unparseable
from mlops_operator.logic import rollout
from mlops_operator.logic.rollout import workloads as workload_rules
from mlops_operator.logic.rollout.state import (
    AnalysisResults,
    EntryInfo,
    Observations,
    Plan,
    RouteObservation,
    Routes,
    VersionInfo,
    WorkloadInfo,
    parse_time,
)
from mlops_operator.logic.status import RETRYING, Event, mark_condition, mark_retrying, status_delta
from mlops_operator.providers import kube
from mlops_operator.providers.metrics import builtin as builtin_metrics
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricProvider, MetricsWarmingUp, Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from mlops_operator.providers.traffic import TrafficContext, TrafficError, TrafficRouter, apply_object, router_for
from mlops_operator.providers.traffic.base import FIELD_MANAGER
from mlops_operator.providers.traffic.builtin import router_pods

@dataclass(frozen=True)
class RolloutProviders:
    """Configuration and I/O factories; the defaults are the real ones."""

    image: str = "localhost/mlops-runtime:dev"
    s3_secret: str = "mlops-s3"
    image_pull_policy: str = "IfNotPresent"
    prometheus_url: str | None = None          # None: the builtin provider (router counters)
    traffic: Callable[[TrafficContext], TrafficRouter] = router_for
    retry_delay: float = 10.0
    pod_defaults: PodOverrides | None = None   # chart value podDefaults: under spec.serving.pod


@dataclass
class RolloutResult:
    """What one pass decided: the merge patch for status, events to post after it, when to come back."""

    status_patch: dict[str, Any]
    events: list[Event]
    requeue_after: float | None
    status: dict[str, Any] = field(default_factory=dict)  # the whole new status
    acted: bool = False                                    # deleted versions or wrote stages
    retrying: bool = False                                 # routes could not be applied; back off


# ------------------------------------------------------------------------------------------- observing


def version_info(mv: Mapping[str, Any]) -> VersionInfo:
    meta, spec, status = mv.get("metadata") or {}, mv.get("spec") or {}, mv.get("status") or {}
    artifact = status.get("artifact") or {}
    return VersionInfo(name=meta.get("name", ""), model=spec.get("model", ""), phase=status.get("phase"),
                       artifact_uri=artifact.get("uri"), artifact_sha256=artifact.get("sha256"),
                       created_at=parse_time(meta.get("creationTimestamp")), stage=status.get("stage"),
                       labels=dict(meta.get("labels") or {}))


def workload_info(deployment: Mapping[str, Any]) -> WorkloadInfo | None:
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
    return any(entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
               and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
               for entry in meta.get("managedFields") or [])


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


async def observe_workloads(namespace: str, name: str, spec: ModelDeploymentSpec) -> dict[str, WorkloadInfo]:
    if _runtime(spec) == "kserve":
        return await _kserve_workloads(namespace, name, spec)
    selector = _selector({build.LABEL_MODELDEPLOYMENT: label_value(name), LABEL_COMPONENT: build.SERVING})
    items = await kube.list_items(_deployments(namespace), selector)
    infos = (workload_info(d) for d in items if not (d.get("metadata") or {}).get("deletionTimestamp"))
    return {w.version: w for w in infos if w is not None}


async def _kserve_workloads(namespace: str, name: str, spec: ModelDeploymentSpec) -> dict[str, WorkloadInfo]:
    """KServe runs the pods: every version its routes name is as Ready as the InferenceService."""
    isvc = await kube.get(kube.custom_path("inferenceservices", namespace, name, group="serving.kserve.io",
                                           version="v1beta1"))
    versions = build.annotated_versions(isvc) or frozenset()
    conditions = ((isvc or {}).get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    replicas = _replicas(spec)
    return {v: WorkloadInfo(v, replicas, replicas if ready else 0) for v in versions}


async def observe_entry(namespace: str, name: str, spec: ModelDeploymentSpec) -> EntryInfo | None:
    """The builtin router's Deployment (what the entry Service selects); None for the other routers,
    whose entry Service selects stable's pods (their readiness is in the workloads) or is KServe's."""
    if _router(spec) != "builtin":
        return None
    router = build.router_name(name)
    deployment = await kube.get(_deployments(namespace, router))
    if deployment is None or (deployment.get("metadata") or {}).get("deletionTimestamp"):
        return EntryInfo(router, 0)
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    return EntryInfo(router, (deployment.get("status") or {}).get("readyReplicas") or 0, replicas)


def _deployments(namespace: str, name: str | None = None) -> str:
    return kube.custom_path("deployments", namespace, name, group="apps", version="v1")


def _runtime(spec: ModelDeploymentSpec) -> str:
    return spec.serving.runtime if spec.serving else "builtin"


def _router(spec: ModelDeploymentSpec) -> str:
    return spec.traffic.router if spec.traffic else "builtin"


def _replicas(spec: ModelDeploymentSpec) -> int:
    return spec.serving.replicas if spec.serving else 1


async def router_token(owner: Mapping[str, Any], model: str) -> str:
    """The router admin token: created once as a Secret (random), read back on every later pass."""
    meta = owner["metadata"]
    obj = await kube.get(kube.core_path("secrets", meta["namespace"], build.router_name(meta["name"])))
    if obj is None:
        secret = build.build_router_secret(owner, model, secrets.token_urlsafe(32))
        obj, created = await kube.create(kube.core_path("secrets", meta["namespace"]), secret)
        if created:
            return secret["stringData"][build.ROUTER_TOKEN_KEY]
    return base64.b64decode((obj.get("data") or {}).get(build.ROUTER_TOKEN_KEY, "")).decode()


def metrics_provider(providers: RolloutProviders, namespace: str, name: str) -> MetricProvider:
    if providers.prometheus_url:
        return PrometheusProvider(providers.prometheus_url)

    async def targets() -> list[str]:
        return [f"{pod.url}/metrics" for pod in await router_pods(namespace, name)]

    return builtin_metrics.provider_for(namespace, name, targets)


# ------------------------------------------------------------------------------------------- applying


def _routes_for_router(spec: ModelDeploymentSpec, plan: Plan) -> Routes | None:
    """KServe only runs what its predictor names: a planned candidate is always the latest revision, and
    the first version is served by writing the InferenceService (its readiness is the workload's)."""
    routes = plan.routes
    if _router(spec) != "kserve":
        return routes
    if routes is None:
        return Routes(plan.workloads[0].version) if plan.workloads else None
    if routes.candidate:
        return routes
    candidate = next((w.version for w in plan.workloads if w.version != routes.stable), None)
    return replace(routes, candidate=candidate, weight=0) if candidate else routes


def serving_pod(spec: ModelDeploymentSpec, providers: RolloutProviders) -> PodOverrides | None:
    """``spec.serving.pod`` over the operator's defaults: how server (and router) pods run."""
    return merge_pod_overrides(providers.pod_defaults, spec.serving.pod if spec.serving else None)


async def _apply_workloads(owner: dict[str, Any], md: ModelDeployment, plan: Plan, obs: Observations,
                           providers: RolloutProviders, events: list[Event]) -> None:
    spec = md.spec
    resources = spec.serving.resources.to_dict() if spec.serving and spec.serving.resources else {}
    pod = serving_pod(spec, providers)
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
            owner=owner, model=spec.model, version=w.version, role=w.role, replicas=w.replicas,
            artifact_uri=info.artifact_uri, artifact_sha256=info.artifact_sha256, image=providers.image,
            s3_secret=providers.s3_secret, pod_role=seen.role if seen else None,
            pod_compiled_model=workload_rules.kept_compiled_model(len(plan.workloads), seen),
            image_pull_policy=providers.image_pull_policy, resources=resources, pod=pod, companions=companions,
            progress_deadline_seconds=int(parse_duration(spec.progress_deadline).total_seconds()))))
        await apply_object(build.build_version_service(owner, spec.model, w.version, w.role))


async def _apply_entry(owner: dict[str, Any], md: ModelDeployment, routes: Routes, providers: RolloutProviders) -> None:
    """The router (builtin) or the entry Service on stable's pods (gatewayAPI); other routers own theirs."""
    router, model = _router(md.spec), md.spec.model
    if router == "builtin":
        replicas = min(2, max(1, _replicas(md.spec)))
        await apply_object(build.build_router_deployment(build.RouterInput(
            owner, model, providers.image, replicas=replicas, image_pull_policy=providers.image_pull_policy,
            pod=serving_pod(md.spec, providers))))
        await apply_object(build.build_entry_service(owner, model, build.router_selector(owner["metadata"]["name"])))
    elif router == "gatewayAPI":
        selector = build.version_selector(owner["metadata"]["name"], routes.stable)
        await apply_object(build.build_entry_service(owner, model, selector))


async def _delete_version(namespace: str, name: str, version: str) -> None:
    child = build.version_name(name, version)
    await kube.delete(kube.core_path("services", namespace, child))
    await kube.delete(_deployments(namespace, child))


async def apply_plan(owner: dict[str, Any], md: ModelDeployment, plan: Plan, obs: Observations,
                     router: TrafficRouter, providers: RolloutProviders) -> list[Event]:
    """Make the world match the plan, in the order the module docstring gives. Returns extra events."""
    namespace, name = obs.namespace, obs.name
    events: list[Event] = []
    kserve = _runtime(md.spec) == "kserve"
    if not kserve:
        await _apply_workloads(owner, md, plan, obs, providers, events)
        await scaling.apply_companions(owner, md.spec.model,
                                       workload_rules.plan_companions(md.spec, plan.status.get("stableVersion"), obs))
    routes = _routes_for_router(md.spec, plan)
    if routes is not None:
        await _apply_entry(owner, md, routes, providers)
        await router.set_routes(routes)
    if plan.preview and not kserve:
        await apply_object(build.build_preview_service(owner, md.spec.model, plan.preview))
    elif md.spec.strategy is not None and md.spec.strategy.type == "BlueGreen":  # the only one that makes it
        await kube.delete(kube.core_path("services", namespace, build.preview_name(name)))
    for version in plan.delete:
        await _delete_version(namespace, name, version)
    for version, stage in plan.stages.items():
        try:
            await kube.patch_status("modelversions", namespace, version, {"stage": stage})
        except kube.KubeError as exc:
            if exc.status != 404:
                raise
    return events


# ------------------------------------------------------------------------------------------- the pass


async def reconcile_modeldeployment(body: Mapping[str, Any], providers: RolloutProviders,
                                    now: datetime | None = None) -> RolloutResult:
    """One pass over one ModelDeployment. ``kube.KubeError`` propagates (the caller backs off); a model
    that cannot be parsed raises pydantic's ``ValidationError`` (the caller reports ``InvalidSpec``)."""
    obj = plain(body)
    md = ModelDeployment.from_body(obj)
    meta, spec = obj["metadata"], md.spec
    namespace, name = meta["namespace"], meta["name"]
    status = obj.get("status") or {}
    now = now or datetime.now(timezone.utc)

    mvs = await kube.list_custom("modelversions", namespace)
    versions = {v.name: v for v in map(version_info, mvs)}
    workloads = await observe_workloads(namespace, name, spec)
    token = await router_token(obj, spec.model) if _router(spec) == "builtin" else None
    router = providers.traffic(TrafficContext(
        owner=obj, model=spec.model, router=_router(spec),
        parent_refs=[p.to_dict() for p in (spec.traffic.parent_refs or [])] if spec.traffic else [],
        token=token, artifact_uris={v: i.artifact_uri for v, i in versions.items() if i.artifact_uri},
        serving_versions=frozenset(workloads), replicas=_replicas(spec),
        resources=spec.serving.resources.to_dict() if spec.serving and spec.serving.resources else None))
    try:
        routes: RouteObservation | None = await router.get_routes()
    except TrafficError:
        routes = None
    obs = Observations(namespace=namespace, name=name, versions=versions, workloads=workloads, routes=routes,
                       entry=await observe_entry(namespace, name, spec),
                       annotations=dict(meta.get("annotations") or {}), generation=meta.get("generation"))

    if rollout.metrics_needed(spec, status, obs, now):
        metrics = metrics_provider(providers, namespace, name)
        obs = replace(obs, metrics_online=await metrics.is_online())
        request = rollout.analysis_request(spec, status, obs, now)
        if request is not None:
            target = Target(namespace, name, spec.model, request.version, request.role)
            try:
                results = await measure(metrics, request.checks, target, request.window)
                obs = replace(obs, analysis=AnalysisResults(request.version, now, request.window, results))
            except MetricsWarmingUp:
                pass  # the run stays due: the next pass measures it

    plan = rollout.decide(spec, status, obs, now)
    try:
        extra = await apply_plan(obj, md, plan, obs, router, providers)
    except TrafficError as exc:
        held, events = mark_retrying(status, "TrafficNotApplied", str(exc), generation=meta.get("generation"), now=now)
        return RolloutResult(status_delta(status, held), events, providers.retry_delay, held, retrying=True)
    new_status = plan.status
    if is_condition_true(new_status.get("conditions"), RETRYING):
        new_status = mark_condition(new_status, RETRYING, "False", "Recovered", "routes applied",
                                    generation=meta.get("generation"), now=now)
    return RolloutResult(status_delta(status, new_status), plan.events + extra, plan.requeue_after, new_status,
                         acted=bool(plan.delete or plan.stages))


async def rollout_step(obj: dict[str, Any], ctx: Context, providers: RolloutProviders) -> Outcome:
    """``reconcile_modeldeployment`` as a step of ``handlers.reconciler.run_passes`` (bind ``providers``)."""
    try:
        result = await reconcile_modeldeployment(obj, providers, now=ctx.now)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    meta = obj.get("metadata") or {}
    rollout_metrics.record(meta.get("namespace", ""), meta.get("name", ""), result.status)
    return Outcome(status=result.status, events=result.events, acted=result.acted,
                   retry_after=ctx.backoff() if result.retrying else None)
