"""The KServe InferenceService of a ModelDeployment with ``runtime: kserve`` (pure).

KServe splits traffic between the *latest* predictor revision and the previous ready one with
``canaryTrafficPercent``; it has no notion of naming two versions at once. So the predictor always
describes the version that should receive ``canaryTrafficPercent`` (the candidate while one is rolled
out, stable otherwise) and KServe keeps the previous revision serving the rest. A rollback rewrites
the predictor to stable without a percentage, which KServe rolls out as a new revision at 100 %.
Shadow mirroring does not exist in KServe (the API rejects Shadow with this router).
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders.labels import model_labels, owner_reference
from mlops_operator.builders.names import label_value
from mlops_operator.builders.serving import LABEL_MODELDEPLOYMENT, ROUTES_ANNOTATION, routes_annotation

API_VERSION = "serving.kserve.io/v1beta1"


def build_inference_service(owner: Mapping[str, Any], model: str, routes: Any, artifact_uris: Mapping[str, str], *,
                            replicas: int = 1, resources: Mapping[str, Any] | None = None,
                            service_account: str | None = None) -> dict[str, Any]:
    """``routes``: ``logic.rollout.state.Routes``; ``artifact_uris``: version -> s3:// prefix of its files."""
    meta = owner["metadata"]
    latest = routes.candidate if routes.candidate else routes.stable
    predictor: dict[str, Any] = {
        "minReplicas": replicas,
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": artifact_uris[latest].rstrip("/")},
    }
    if routes.candidate:
        predictor["canaryTrafficPercent"] = routes.weight
    if resources:
        predictor["model"]["resources"] = dict(resources)
    if service_account:
        predictor["serviceAccountName"] = service_account
    labels = model_labels(model, latest, component="serving")
    labels[LABEL_MODELDEPLOYMENT] = label_value(meta["name"])
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
                     "annotations": {ROUTES_ANNOTATION: routes_annotation(routes)},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {"predictor": predictor},
    }

