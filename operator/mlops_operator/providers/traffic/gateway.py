"""Gateway API as a traffic provider: the HTTPRoute carries the weights and the mirror.

Setting routes is one server-side apply; reading them back uses the ``mlops.dev/routes`` annotation the
builder writes (the route names Services, the rollout thinks in versions). The Gateway's data plane
converges on its own; scale-down still waits for the next pass, which reads the route back first.
The entry Service of this router selects stable's pods (the in-cluster way in, beside the Gateway).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mlops_operator.builders.serving import annotated_versions, build_entry_service, version_selector
from mlops_operator.builders.traffic_gateway import API_VERSION, build_http_route
from mlops_operator.logic.rollout.state import RouteObservation, Routes
from mlops_operator.providers.kube import apply_object, get_object
from mlops_operator.providers.traffic.base import ServingContext
from mlops_operator.providers.traffic.deployments import DeploymentServing


class GatewayRouter:
    name = "gatewayAPI"

    def __init__(self, owner: Mapping[str, Any], model: str, parent_refs: Sequence[Mapping[str, Any]]):
        self.owner, self.model, self.parent_refs = owner, model, parent_refs

    async def set_routes(self, routes: Routes) -> None:
        await apply_object(build_http_route(self.owner, self.model, routes, self.parent_refs))

    async def get_routes(self) -> RouteObservation | None:
        meta = self.owner["metadata"]
        route = await get_object(API_VERSION, "HTTPRoute", meta["namespace"], meta["name"])
        versions = annotated_versions(route)
        return None if versions is None else RouteObservation(versions)


async def apply_entry(ctx: ServingContext, routes: Routes) -> None:
    """The entry Service on stable's pods."""
    await apply_object(build_entry_service(ctx.owner, ctx.model, version_selector(ctx.name, routes.stable)))


def provider(ctx: ServingContext) -> DeploymentServing:
    refs = [p.to_dict() for p in (ctx.md.spec.traffic.parent_refs or [])] if ctx.md.spec.traffic else []
    return DeploymentServing("gatewayAPI", ctx, GatewayRouter(ctx.owner, ctx.model, refs), apply_entry=apply_entry)
