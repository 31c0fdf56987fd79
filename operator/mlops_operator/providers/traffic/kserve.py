"""KServe as a traffic provider: the InferenceService's predictor and ``canaryTrafficPercent``.

KServe runs the pods itself (serving.runtime kserve): the rollout's routes become the predictor of the
version that should get ``canaryTrafficPercent`` (see ``builders.traffic_kserve``). Reading back uses the
``mlops.dev/routes`` annotation; KServe keeps the previous revision until the new one is Ready.
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders.serving import annotated_versions
from mlops_operator.builders.traffic_kserve import API_VERSION, build_inference_service
from mlops_operator.logic.rollout.state import RouteObservation, Routes
from mlops_operator.providers.traffic.base import apply_object, get_object


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
