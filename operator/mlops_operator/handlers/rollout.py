"""ModelDeployment reconcile: snapshot the world, ``logic.rollout.decide``, apply the plan, return status.

One call is one pass and takes one step. The order of I/O is what makes it crash-safe:
1. observe: ModelVersions (from the operator's index, ``logic.rollout.version_index``), then the traffic provider's serving workloads, entry point and routes read
   back (``providers.traffic``), and (only during a rollout or a post-promotion window with checks)
   whether the metrics provider answers;
2. measure, if the decision says an analysis run is due (results newer than the step or window start);
3. decide (pure);
4. apply: the traffic provider (workloads, entry point, routes, preview, deletions: traffic first,
   scale-down later), then ModelVersion stages.
If setting routes fails, the decided status is *not* returned: the old status plus a ``Retrying``
condition is, so no step is recorded as taken while traffic does not follow it, and a manual request
(promote/abort/retry) stays unhandled until its action really happened.

Kopf wiring: ``rollout_reconciler(providers, versions_index)`` is the kind's ``Reconciler`` (observe, decide, act).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from mlops_operator import rollout_metrics
from mlops_operator.api.v1alpha1.common import is_condition_true
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.api.v1alpha1.pod import PodOverrides, merge_pod_overrides
from mlops_operator.handlers.reconciler import Context, Reconciler, Snapshot
from mlops_operator.logic import rollout
from mlops_operator.logic.rollout.state import AnalysisResults, Observations, Plan, RolloutStatus, VersionInfo
from mlops_operator.logic.rollout.version_index import Lookup, named_versions, observed_versions
from mlops_operator.logic.status import RETRYING, Outcome, mark_condition, mark_retrying
from mlops_operator.providers import kube
from mlops_operator.providers.metrics import builtin as builtin_metrics
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricProvider, MetricsWarmingUp, Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from mlops_operator.providers.traffic import ServingContext, TrafficError, TrafficProvider, provider_for
from mlops_operator.providers.traffic.builtin import router_pods

KIND, PLURAL = "ModelDeployment", "modeldeployments"


@dataclass(frozen=True)
class RolloutProviders:
    """Configuration and I/O factories; the defaults are the real ones."""

    image: str = "localhost/mlops-runtime:dev"
    s3_secret: str = "mlops-s3"
    image_pull_policy: str = "IfNotPresent"
    prometheus_url: str | None = None          # None: the builtin provider (router counters)
    traffic: Callable[[ServingContext], TrafficProvider] = provider_for
    pod_defaults: PodOverrides | None = None   # chart value podDefaults: under spec.serving.pod


@dataclass(frozen=True)
class RolloutWorld:
    """What a pass observed, and the traffic provider that observed it (it applies the plan too)."""

    obs: Observations
    traffic: TrafficProvider


def serving_context(obj: Mapping[str, Any], md: ModelDeployment, versions: Mapping[str, VersionInfo],
                    providers: RolloutProviders) -> ServingContext:
    """What the traffic provider needs; pods run with ``spec.serving.pod`` over the operator's defaults."""
    pod = merge_pod_overrides(providers.pod_defaults, md.spec.serving.pod if md.spec.serving else None)
    return ServingContext(owner=obj, md=md, versions=versions, image=providers.image, s3_secret=providers.s3_secret,
                          image_pull_policy=providers.image_pull_policy, pod=pod)


def metrics_provider(providers: RolloutProviders, namespace: str, name: str) -> MetricProvider:
    if providers.prometheus_url:
        return PrometheusProvider(providers.prometheus_url)

    async def targets() -> list[str]:
        return [f"{pod.url}/metrics" for pod in await router_pods(namespace, name)]

    return builtin_metrics.provider_for(namespace, name, targets)


async def write_stages(namespace: str, stages: Mapping[str, str]) -> None:
    for version, stage in stages.items():
        try:
            await kube.patch_status("modelversions", namespace, version, {"stage": stage})
        except kube.KubeError as exc:
            if exc.status != 404:
                raise


def rollout_reconciler(providers: RolloutProviders, versions_index: Callable[[Context], Lookup],
                       indices: tuple[str, ...] = ()) -> Reconciler[ModelDeployment, RolloutWorld]:
    """The ModelDeployment pass with ``providers`` bound (see the module docstring for the order of I/O).
    ``versions_index``: the ModelVersions by key for a pass (``logic.rollout.version_index``), found in the
    Kopf ``indices`` the kind registers with; no list call per pass."""

    async def observe(snap: Snapshot[ModelDeployment]) -> RolloutWorld:
        md, meta, status, now = snap.model, snap.body["metadata"], snap.status, snap.ctx.now
        namespace, name, spec = snap.namespace, snap.name, snap.model.spec
        versions = observed_versions(versions_index(snap.ctx), namespace, spec.model,
                                     named_versions(spec.version, RolloutStatus.from_dict(status)))
        traffic = providers.traffic(serving_context(snap.body, md, versions, providers))
        served = await traffic.observe()
        obs = Observations(namespace=namespace, name=name, versions=versions, workloads=served.workloads,
                           routes=served.routes, entry=served.entry, annotations=dict(meta.get("annotations") or {}),
                           generation=meta.get("generation"))
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
        return RolloutWorld(obs, traffic)

    def decide(snap: Snapshot[ModelDeployment], world: RolloutWorld) -> Plan:
        return rollout.decide(snap.model.spec, snap.status, world.obs, snap.ctx.now)

    async def act(snap: Snapshot[ModelDeployment], world: RolloutWorld, plan: Plan) -> Outcome:
        outcome = await apply_plan(snap, world, plan)
        rollout_metrics.record(snap.namespace, snap.name, outcome.status)
        return outcome

    return Reconciler(KIND, PLURAL, ModelDeployment.from_body, observe, decide, act, indices)


async def apply_plan(snap: Snapshot[ModelDeployment], world: RolloutWorld, plan: Plan) -> Outcome:
    """Traffic first, then stages. Routes that cannot be set keep the old status plus ``Retrying``."""
    generation, now = snap.body["metadata"].get("generation"), snap.ctx.now
    try:
        extra = await world.traffic.apply(plan, world.obs)
    except TrafficError as exc:
        held, events = mark_retrying(snap.status, "TrafficNotApplied", str(exc), generation=generation, now=now)
        return Outcome(status=held, events=events, retry=True)
    await write_stages(snap.namespace, plan.stages)
    if is_condition_true(plan.status.get("conditions"), RETRYING):
        plan.status = mark_condition(plan.status, RETRYING, "False", "Recovered", "routes applied",
                                     generation=generation, now=now)
    plan.events = plan.events + extra
    plan.acted = bool(plan.delete or plan.stages)
    return plan
