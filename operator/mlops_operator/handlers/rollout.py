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

Kopf wiring: ``rollout_step`` is the step ``handlers.reconciler.run_passes`` drives (bind ``providers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from mlops_operator import rollout_metrics
from mlops_operator.api.v1alpha1.common import is_condition_true, plain
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.api.v1alpha1.pod import PodOverrides, merge_pod_overrides
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, unparseable
from mlops_operator.logic import rollout
from mlops_operator.logic.rollout.state import AnalysisResults, Observations, VersionInfo
from mlops_operator.logic.rollout.version_index import Lookup, named_versions, observed_versions
from mlops_operator.logic.status import RETRYING, Event, mark_condition, mark_retrying, status_delta
from mlops_operator.providers import kube
from mlops_operator.providers.metrics import builtin as builtin_metrics
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import MetricProvider, MetricsWarmingUp, Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from mlops_operator.providers.traffic import ServingContext, TrafficError, TrafficProvider, provider_for
from mlops_operator.providers.traffic.builtin import router_pods


@dataclass(frozen=True)
class RolloutProviders:
    """Configuration and I/O factories; the defaults are the real ones."""

    image: str = "localhost/mlops-runtime:dev"
    s3_secret: str = "mlops-s3"
    image_pull_policy: str = "IfNotPresent"
    prometheus_url: str | None = None          # None: the builtin provider (router counters)
    traffic: Callable[[ServingContext], TrafficProvider] = provider_for
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


async def reconcile_modeldeployment(body: Mapping[str, Any], providers: RolloutProviders, versions_index: Lookup,
                                    now: datetime | None = None) -> RolloutResult:
    """One pass over one ModelDeployment. ``kube.KubeError`` propagates (the caller backs off); a model
    that cannot be parsed raises pydantic's ``ValidationError`` (the caller reports ``InvalidSpec``).
    ``versions_index``: the ModelVersions by key (``logic.rollout.version_index``); no list call per pass."""
    obj = plain(body)
    md = ModelDeployment.from_body(obj)
    meta, spec = obj["metadata"], md.spec
    namespace, name = meta["namespace"], meta["name"]
    status = obj.get("status") or {}
    now = now or datetime.now(timezone.utc)

    versions = observed_versions(versions_index, namespace, spec.model, named_versions(obj.get("spec") or {}, status))
    traffic = providers.traffic(serving_context(obj, md, versions, providers))
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

    plan = rollout.decide(spec, status, obs, now)
    try:
        extra = await traffic.apply(plan, obs)
    except TrafficError as exc:
        held, events = mark_retrying(status, "TrafficNotApplied", str(exc), generation=meta.get("generation"), now=now)
        return RolloutResult(status_delta(status, held), events, providers.retry_delay, held, retrying=True)
    await write_stages(namespace, plan.stages)
    new_status = plan.status
    if is_condition_true(new_status.get("conditions"), RETRYING):
        new_status = mark_condition(new_status, RETRYING, "False", "Recovered", "routes applied",
                                    generation=meta.get("generation"), now=now)
    return RolloutResult(status_delta(status, new_status), plan.events + extra, plan.requeue_after, new_status,
                         acted=bool(plan.delete or plan.stages))


async def rollout_step(obj: dict[str, Any], ctx: Context, providers: RolloutProviders, versions_index: Lookup) -> Outcome:
    """``reconcile_modeldeployment`` as a step of ``handlers.reconciler.run_passes`` (bind ``providers`` and
    the index)."""
    try:
        result = await reconcile_modeldeployment(obj, providers, versions_index, now=ctx.now)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    meta = obj.get("metadata") or {}
    rollout_metrics.record(meta.get("namespace", ""), meta.get("name", ""), result.status)
    return Outcome(status=result.status, events=result.events, acted=result.acted,
                   retry_after=ctx.backoff() if result.retrying else None, requeue_after=result.requeue_after)
