"""RetrainPolicy: a timer drives the one-step-per-pass loop of ``logic.retrainpolicy``; this module is the I/O.

Each pass reads the template's references (FeatureSet, ModelDeployment; the FeatureSet's latestVersion
comes with them), the ModelVersions labelled with the policy while some are active, the ModelVersion
about to be created (by name: someone else may hold it) and, when ``needs`` says the interval has
passed, the metric query from Prometheus — then creates the ModelVersion the decision asks for
(AlreadyExists is success). The status write, with the resourceVersion the pass read, is the pass
loop's: a 409 (the /alerts webhook appended an alert meanwhile) re-reads and decides again, so neither
writer loses the other's entries.
"""

from __future__ import annotations

from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.builders.retrain import policy_selector
from mlops_operator.handlers.reconciler import Reconciler, Snapshot, register
from mlops_operator.handlers.references import resolve
from mlops_operator.logic import deletion
from mlops_operator.logic import retrainpolicy as logic
from mlops_operator.logic.status import Outcome
from mlops_operator.providers import kube
from mlops_operator.providers.metrics.base import MetricsError
from mlops_operator.providers.metrics.prometheus import PrometheusProvider

KIND, PLURAL = "RetrainPolicy", "retrainpolicies"
MODELVERSIONS, MODELDEPLOYMENTS = "modelversions", "modeldeployments"


async def read_metric(query: str, prometheus_url: str | None) -> logic.MetricReading:
    """The metric trigger's query answered by Prometheus (the router's builtin provider has no PromQL)."""
    if not prometheus_url:
        return logic.MetricReading(problem="PrometheusNotConfigured",
                                   message="the metric trigger needs Prometheus: set MLOPS_PROMETHEUS_URL")
    try:
        return logic.MetricReading(value=await PrometheusProvider(prometheus_url).run_query(query))
    except MetricsError as exc:
        return logic.MetricReading(problem="PrometheusUnavailable", message=f"query {query!r}: {exc}")


async def observe(snap: Snapshot[RetrainPolicy]) -> logic.World:
    rp, status, ns, name = snap.model, snap.status, snap.namespace, snap.name
    need, prometheus_url = logic.needs(rp, status, snap.ctx.now), snap.ctx.settings.prometheus_url
    targets, problems = await resolve(need.references, ns)
    fs = next((t for ref, t in targets.items() if ref.kind == "FeatureSet" and t is not None), None)
    items = await kube.list_custom(MODELVERSIONS, ns, policy_selector(name)) if need.versions else []
    versions = {v.name: v for v in map(logic.observe_version, items)}
    pending = None
    if need.pending:
        body = await kube.get_custom(MODELVERSIONS, ns, need.pending)
        pending = logic.observe_version(body) if body is not None else None
    metric = await read_metric(need.metric_query, prometheus_url) if need.metric_query else None
    routed = None
    if logic.needs_deployments(rp, status, versions):
        deployments = await kube.list_custom(MODELDEPLOYMENTS, ns)
        routed = frozenset(v for v in versions if deletion.routed_by(v, deployments))
    return logic.World(problems=problems, versions=versions, pending=pending, metric=metric, routed=routed,
                       feature_set_version=((fs or {}).get("status") or {}).get("latestVersion"), feature_set=fs)


async def prune(namespace: str, action: logic.Prune) -> None:
    """Annotate a version for artifact deletion, or delete it if it is still the object we decided on."""
    if action.action == deletion.Prune.ANNOTATE:
        await kube.patch_metadata(MODELVERSIONS, namespace, action.name, annotations={deletion.DELETE_ARTIFACTS: "true"})
    else:
        await kube.delete(kube.custom_path(MODELVERSIONS, namespace, action.name), uid=action.uid)


def decide(snap: Snapshot[RetrainPolicy], world: logic.World) -> logic.RetrainOutcome:
    return logic.decide(snap.model, snap.status, world, snap.ctx.now)


async def act(snap: Snapshot[RetrainPolicy], world: logic.World, outcome: logic.RetrainOutcome) -> Outcome:
    """Create the ModelVersion, prune a version, or ask the FeatureSet for a snapshot (metadata only)."""
    created = False
    if outcome.model_version is not None:
        _, created = await kube.create(kube.custom_path(MODELVERSIONS, snap.namespace), outcome.model_version)
    if outcome.prune is not None:
        await prune(snap.namespace, outcome.prune)
    if outcome.request_snapshot is not None:  # fresh data
        fs, request = outcome.request_snapshot
        await kube.patch_metadata("featuresets", snap.namespace, fs, annotations={logic.MATERIALIZE_ANNOTATION: request})
    outcome.acted = created or outcome.prune is not None or outcome.request_snapshot is not None
    return outcome


RECONCILER = Reconciler(KIND, PLURAL, RetrainPolicy.from_body, observe, decide, act)
step = RECONCILER.step
register(RECONCILER, on_change=("spec", ["metadata", "annotations", logic.REQUEST_ANNOTATION]))
