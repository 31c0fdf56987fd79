"""The HorizontalPodAutoscaler and PodDisruptionBudget of a ModelDeployment's servers (pure, deterministic).

Both are named ``mdep-<name>`` and owned by the ModelDeployment. The autoscaler targets the *stable*
version's Deployment (each version has its own, ``builders.serving.version_name``): after a promotion it
is re-pointed at the new stable version. The budget selects the server pods of every version, so a drain
never takes the candidate and stable below it together.

Requests per second are read from the Pods metric ``mlops_requests_per_second``, which no cluster has by
itself: a custom-metrics adapter (prometheus-adapter) must derive it from the servers'
``mlops_requests_total`` (docs/pods.md gives the adapter rule).
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.api.v1alpha1.modeldeployment import Autoscaling, DisruptionBudget
from mlops_operator.builders.labels import LABEL_COMPONENT, model_labels, owner_reference
from mlops_operator.builders.names import child_name, label_value
from mlops_operator.builders.serving import LABEL_MODELDEPLOYMENT, SERVING, version_name

RPS_METRIC = "mlops_requests_per_second"


def autoscaling_name(deployment: str) -> str:
    """``mdep-<deployment>``: the HorizontalPodAutoscaler and the PodDisruptionBudget (different kinds)."""
    return child_name("mdep", deployment)


def _meta(owner: Mapping[str, Any], model: str) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = {**model_labels(model, None, component=SERVING), LABEL_MODELDEPLOYMENT: label_value(name)}
    return {"name": autoscaling_name(name), "namespace": owner["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [owner_reference(owner)]}


def build_hpa(owner: Mapping[str, Any], model: str, stable: str, spec: Autoscaling) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler on ``stable``'s Deployment."""
    metrics: list[dict[str, Any]] = []
    if spec.target_cpu_utilization is not None:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": spec.target_cpu_utilization}}})
    if spec.target_requests_per_second is not None:
        metrics.append({"type": "Pods", "pods": {
            "metric": {"name": RPS_METRIC},
            "target": {"type": "AverageValue", "averageValue": str(spec.target_requests_per_second)}}})
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, model),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": version_name(owner["metadata"]["name"], stable)},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": metrics,
        },
    }


def build_pdb(owner: Mapping[str, Any], model: str, spec: DisruptionBudget) -> dict[str, Any]:
    """A policy/v1 PodDisruptionBudget over the server pods of every version of this ModelDeployment."""
    name = owner["metadata"]["name"]
    budget = {"minAvailable": spec.min_available} if spec.min_available is not None \
        else {"maxUnavailable": spec.max_unavailable}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, model),
        "spec": {**budget,
                 "selector": {"matchLabels": {LABEL_MODELDEPLOYMENT: label_value(name), LABEL_COMPONENT: SERVING}}},
    }
