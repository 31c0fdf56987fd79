"""The traffic router interface (``set_routes`` / ``get_routes``) and the one apply verb routers share.

``get_routes`` answers the question the rollout's "traffic first" rule asks: which versions may still
receive requests (or mirrored requests)? It reads back every place that holds the routes; when any of
them cannot be read it returns None ("cannot tell"), and nothing is scaled down on that pass.

``apply_object`` is server-side apply with a fixed field manager: idempotent create-or-update of a whole
manifest, so a pass that is repeated after a crash converges on the same object. (It belongs in
``providers.kube`` next to ``create``; it lives here until it moves.)
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from mlops_operator.logic.rollout.state import RouteObservation, Routes
from mlops_operator.providers import kube

FIELD_MANAGER = "mlops-operator"
_APPLY_PATCH = "application/apply-patch+yaml"
_PLURALS = {
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("apps/v1", "Deployment"): "deployments",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices",
}


class TrafficError(Exception):
    """Routes could not be set everywhere (e.g. a router replica refused or did not answer)."""


class TrafficRouter(Protocol):
    name: str

    async def set_routes(self, routes: Routes) -> None:
        """Make ``routes`` effective; raise ``TrafficError`` or ``kube.KubeError`` if it is not (yet)."""
        ...

    async def get_routes(self) -> RouteObservation | None:
        """The versions that may still get requests, from every source; None when it cannot tell."""
        ...


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = _PLURALS[(api_version, kind)]
    if "/" not in api_version:
        return kube.core_path(plural, namespace, name)
    group, version = api_version.split("/", 1)
    return kube.custom_path(plural, namespace, name, group=group, version=version)


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


async def apply_object(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply ``obj`` (create or update the fields ``manager``, this operator by default, owns)."""
    return await kube.request("PATCH", object_path(obj), body=dict(obj), content_type=_APPLY_PATCH,
                              query=[("fieldManager", manager), ("force", "true")])


async def get_object(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get(resource_path(api_version, kind, namespace, name))
