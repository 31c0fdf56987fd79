"""The Gateway API HTTPRoute of a ModelDeployment: weighted backends and a request mirror (pure).

Backends are the per-version Services (``builders.serving.version_name``), so the split happens in the
Gateway's data plane and no router pod is needed. The RequestMirror filter sends a copy of requests to
a shadow; ``percent`` is set only below 100 (a field of Gateway API v1.2+), so a 100 % mirror also works
with older implementations. The routes are recorded in an annotation (``serving.annotated_versions``
reads them back as versions rather than Service names).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mlops_operator.builders.labels import model_labels, owner_reference
from mlops_operator.builders.names import label_value
from mlops_operator.builders.serving import (
    LABEL_MODELDEPLOYMENT,
    PORT,
    ROUTES_ANNOTATION,
    routes_annotation,
    version_name,
)

API_VERSION = "gateway.networking.k8s.io/v1"


def _backend(deployment: str, version: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": version_name(deployment, version), "port": PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def build_http_route(owner: Mapping[str, Any], model: str, routes: Any,
                     parent_refs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``routes`` is a ``logic.rollout.state.Routes``; ``parent_refs`` the spec's camelCase parentRefs."""
    meta = owner["metadata"]
    deployment = meta["name"]
    backends = [_backend(deployment, routes.stable, 100 - (routes.weight if routes.candidate else 0))]
    if routes.candidate and routes.weight > 0:
        backends.append(_backend(deployment, routes.candidate, routes.weight))
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}
    if routes.shadow and routes.mirror_percent > 0:
        mirror: dict[str, Any] = {"backendRef": _backend(deployment, routes.shadow)}
        if routes.mirror_percent < 100:
            mirror["percent"] = routes.mirror_percent
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    labels = model_labels(model, component="traffic")
    labels[LABEL_MODELDEPLOYMENT] = label_value(deployment)
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": deployment, "namespace": meta["namespace"], "labels": labels,
                     "annotations": {ROUTES_ANNOTATION: routes_annotation(routes)},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {"parentRefs": [dict(p) for p in parent_refs], "rules": [rule]},
    }

