"""Traffic providers behind one interface (``base.TrafficProvider``), chosen by ``spec.traffic.router``.

builtin (the default): the mlops-route Deployment, configured through its ConfigMap and admin API.
gatewayAPI: an HTTPRoute with weighted backends and a RequestMirror filter.
kserve: an InferenceService's canaryTrafficPercent (serving.runtime kserve, which the API pairs with it).
service: a selector switch on the entry Service (replica-ratio split in between).
The first three of builtin/gatewayAPI/service share the serving Deployments (``deployments``).
"""

from __future__ import annotations

from typing import Callable

from mlops_operator.api.v1alpha1.modeldeployment import Router
from mlops_operator.providers.traffic import builtin, gateway, kserve, service
from mlops_operator.providers.traffic.base import ServingContext, TrafficError, TrafficProvider

PROVIDERS: dict[Router, Callable[[ServingContext], TrafficProvider]] = {
    Router.BUILTIN: builtin.provider,
    Router.GATEWAY_API: gateway.provider,
    Router.KSERVE: kserve.provider,
    Router.SERVICE: service.provider,
}


def provider_for(ctx: ServingContext) -> TrafficProvider:
    """The provider ``spec.traffic.router`` names (builtin when unset; the API admits only these four)."""
    traffic = ctx.md.spec.traffic
    return PROVIDERS[Router(traffic.router) if traffic else Router.BUILTIN](ctx)


__all__ = ["ServingContext", "TrafficError", "TrafficProvider", "provider_for"]
