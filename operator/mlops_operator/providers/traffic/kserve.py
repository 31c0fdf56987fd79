"""KServe as a traffic provider: the InferenceService's predictor and ``canaryTrafficPercent``.

KServe runs the pods itself (serving.runtime kserve): the rollout's routes become the predictor of the
version that should get ``canaryTrafficPercent`` (see ``builders.traffic_kserve``). Reading back uses the
``mlops.dev/routes`` annotation; KServe keeps the previous revision until the new one is Ready.

As a provider it owns the workloads too: every version the InferenceService names is as Ready as the
InferenceService, and the first version is served by writing it (there is no Deployment of ours to apply).
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders.serving import annotated_versions
from mlops_operator.builders.traffic_kserve import API_VERSION, build_inference_service
from mlops_operator.logic.rollout.state import Observations, Plan, RouteObservation, Routes, WorkloadInfo
from mlops_operator.logic.rollout.workloads import kserve_routes
from mlops_operator.logic.status import Event
from mlops_operator.providers.kube import apply_object, get_object
from mlops_operator.providers.traffic.base import Served, ServingContext, TrafficError
from mlops_operator.providers.traffic.deployments import retire


class KServeRouter:
    name = "kserve"

    def __init__(self, owner: Mapping[str, Any], model: str, artifact_uris: Mapping[str, str], *, replicas: int = 1,
                 resources: Mapping[str, Any] | None = None, service_account: str | None = None):
        self.owner, self.model, self.artifact_uris = owner, model, artifact_uris
        self.replicas, self.resources, self.service_account = replicas, resources, service_account

    async def set_routes(self, routes: Routes) -> None:
        await apply_object(build_inference_service(self.owner, self.model, routes, self.artifact_uris,
                                                   replicas=self.replicas, resources=self.resources,
                                                   service_account=self.service_account))

    async def get_routes(self) -> RouteObservation | None:
        meta = self.owner["metadata"]
        isvc = await get_object(API_VERSION, "InferenceService", meta["namespace"], meta["name"])
        versions = annotated_versions(isvc)
        return None if versions is None else RouteObservation(versions)


class KServeServing:
    name = "kserve"

    def __init__(self, ctx: ServingContext):
        self.ctx = ctx
        uris = {v: i.artifact_uri for v, i in ctx.versions.items() if i.artifact_uri}
        self.routes = KServeRouter(ctx.owner, ctx.model, uris, replicas=ctx.replicas, resources=ctx.resources)

    async def observe(self) -> Served:
        isvc = await get_object(API_VERSION, "InferenceService", self.ctx.namespace, self.ctx.name)
        versions = annotated_versions(isvc) or frozenset()
        conditions = ((isvc or {}).get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        replicas = self.ctx.replicas
        workloads = {v: WorkloadInfo(v, replicas, replicas if ready else 0) for v in versions}
        try:
            routes = await self.routes.get_routes()
        except TrafficError:
            routes = None
        return Served(workloads, None, routes)

    async def apply(self, plan: Plan, obs: Observations) -> list[Event]:
        routes = kserve_routes(plan)
        if routes is not None:
            await self.routes.set_routes(routes)
        await retire(self.ctx, plan, preview=False)
        return []


def provider(ctx: ServingContext) -> KServeServing:
    return KServeServing(ctx)
