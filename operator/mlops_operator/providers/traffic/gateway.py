"""Gateway API as a traffic provider: the HTTPRoute carries the weights and the mirror.

Setting routes is one server-side apply; reading them back uses the ``mlops.dev/routes`` annotation the
builder writes (the route names Services, the rollout thinks in versions). The Gateway's data plane
converges on its own; scale-down still waits for the next pass, which reads the route back first.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mlops_operator.builders.serving import annotated_versions
from mlops_operator.builders.traffic_gateway import API_VERSION, build_http_route
from mlops_operator.logic.rollout.state import RouteObservation, Routes
from mlops_operator.providers.traffic.base import apply_object, get_object


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
