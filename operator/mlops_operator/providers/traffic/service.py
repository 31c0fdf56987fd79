"""A plain Service as the traffic provider: a selector switch, no fractional weights.

The entry Service selects the stable version's pods; at 100 % it selects the candidate's. In between
it selects every serving pod of the ModelDeployment, so the split follows the replica ratio (both
versions run full replicas: about half each) — the closest a Service can come to a canary weight.
Mirroring is not possible (the API rejects Shadow with this router). The entry Service is the route.
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders.labels import LABEL_COMPONENT, LABEL_MODELVERSION
from mlops_operator.builders.serving import (
    LABEL_MODELDEPLOYMENT,
    SERVING,
    build_entry_service,
    version_selector,
)
from mlops_operator.builders.names import label_value
from mlops_operator.logic.rollout.state import RouteObservation, Routes
from mlops_operator.providers.kube import apply_object, get_object
from mlops_operator.providers.traffic.base import ServingContext
from mlops_operator.providers.traffic.deployments import DeploymentServing, observe_deployments


def service_selector(deployment: str, routes: Routes) -> dict[str, str]:
    if routes.candidate and routes.weight >= 100:
        return version_selector(deployment, routes.candidate)
    if routes.candidate and routes.weight > 0:
        return {LABEL_MODELDEPLOYMENT: label_value(deployment), LABEL_COMPONENT: SERVING}
    return version_selector(deployment, routes.stable)


class ServiceRouter:
    name = "service"

    def __init__(self, owner: Mapping[str, Any], model: str):
        self.owner, self.model = owner, model

    async def set_routes(self, routes: Routes) -> None:
        selector = service_selector(self.owner["metadata"]["name"], routes)
        await apply_object(build_entry_service(self.owner, self.model, selector))

    async def get_routes(self) -> RouteObservation | None:
        meta = self.owner["metadata"]
        service = await get_object("v1", "Service", meta["namespace"], meta["name"])
        if service is None:
            return RouteObservation(frozenset())
        selector = (service.get("spec") or {}).get("selector") or {}
        if LABEL_MODELVERSION in selector:
            return RouteObservation(frozenset({selector[LABEL_MODELVERSION]}))
        return RouteObservation(frozenset(await observe_deployments(meta["namespace"], meta["name"])))  # all selected


def provider(ctx: ServingContext) -> DeploymentServing:
    return DeploymentServing("service", ctx, ServiceRouter(ctx.owner, ctx.model))
