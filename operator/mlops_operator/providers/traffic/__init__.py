"""Traffic routers behind one interface, chosen by ``spec.traffic.router`` (one module each).

builtin (the default): the mlops-route Deployment, configured through its ConfigMap and admin API.
gatewayAPI: an HTTPRoute with weighted backends and a RequestMirror filter.
kserve: an InferenceService's canaryTrafficPercent (serving.runtime kserve).
service: a selector switch on the entry Service (replica-ratio split in between).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mlops_operator.providers.traffic.base import TrafficError, TrafficRouter, apply_object
from mlops_operator.providers.traffic.builtin import BuiltinRouter, ConfigMapStore, RouterPod, router_pods
from mlops_operator.providers.traffic.gateway import GatewayRouter
from mlops_operator.providers.traffic.kserve import KServeRouter
from mlops_operator.providers.traffic.service import ServiceRouter


@dataclass(frozen=True)
class TrafficContext:
    """What the routers need to know about the ModelDeployment they route for."""

    owner: Mapping[str, Any]                                    # the ModelDeployment body
    model: str
    router: str = "builtin"
    parent_refs: Sequence[Mapping[str, Any]] = ()               # gatewayAPI
    token: str | None = None                                    # builtin: admin token of PUT /-/config
    artifact_uris: Mapping[str, str] = field(default_factory=dict)  # kserve: version -> s3:// prefix
    serving_versions: frozenset[str] = frozenset()              # service: versions with pods
    replicas: int = 1
    resources: Mapping[str, Any] | None = None


def router_for(ctx: TrafficContext) -> TrafficRouter:
    meta = ctx.owner["metadata"]
    namespace, deployment = meta["namespace"], meta["name"]
    if ctx.router == "gatewayAPI":
        return GatewayRouter(ctx.owner, ctx.model, ctx.parent_refs)
    if ctx.router == "kserve":
        return KServeRouter(ctx.owner, ctx.model, ctx.artifact_uris, replicas=ctx.replicas, resources=ctx.resources)
    if ctx.router == "service":
        return ServiceRouter(ctx.owner, ctx.model, ctx.serving_versions)

    async def pods() -> list[RouterPod]:
        return await router_pods(namespace, deployment)

    return BuiltinRouter(namespace=namespace, deployment=deployment, model=ctx.model,
                         store=ConfigMapStore(ctx.owner, ctx.model), pods=pods, token=ctx.token)


__all__ = ["TrafficContext", "TrafficError", "TrafficRouter", "apply_object", "router_for"]
