"""What a traffic provider is: the one interface the rollout handler talks to, and the context it is built from.

A provider owns everything between a decided ``Plan`` and requests reaching the right model server: the
serving workloads (our Deployments, or KServe's InferenceService), the entry point (the builtin router,
an entry Service, an HTTPRoute) and the routes. It has two verbs:

- ``observe``: the serving workloads, the entry point and the routes read back from every place that
  holds them. Routes are None when any of those places cannot be read ("cannot tell"): nothing is scaled
  down on that pass (the rollout's "traffic first" rule).
- ``apply``: make the world match the plan, in a crash-safe order: workloads, then the entry point, then
  the routes, then the preview Service, then deletions of versions no observed route referenced. Raises
  ``TrafficError`` when the routes could not be made effective everywhere.

Inside each provider, the route setter (``set_routes`` / ``get_routes``) is the narrow part that differs
most; it is kept as its own small class per router and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.logic.rollout.state import (
    EntryInfo,
    Observations,
    Plan,
    RouteObservation,
    Routes,
    VersionInfo,
    WorkloadInfo,
)
from mlops_operator.logic.status import Event


class TrafficError(Exception):
    """Routes could not be set everywhere (e.g. a router replica refused or did not answer)."""


@dataclass(frozen=True)
class ServingContext:
    """One ModelDeployment as the providers see it: its body, its parsed model, its versions, how pods run."""

    owner: Mapping[str, Any]                 # the ModelDeployment body (owner of every child)
    md: ModelDeployment
    versions: Mapping[str, VersionInfo] = field(default_factory=dict)
    image: str = "localhost/mlops-runtime:dev"
    s3_secret: str = "mlops-s3"
    image_pull_policy: str = "IfNotPresent"
    pod: PodOverrides | None = None          # spec.serving.pod over the operator's defaults

    @property
    def namespace(self) -> str:
        return self.owner["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.owner["metadata"]["name"]

    @property
    def model(self) -> str:
        return self.md.spec.model

    @property
    def replicas(self) -> int:
        return self.md.spec.serving.replicas if self.md.spec.serving else 1

    @property
    def resources(self) -> dict[str, Any] | None:
        serving = self.md.spec.serving
        return serving.resources.to_dict() if serving and serving.resources else None


@dataclass(frozen=True)
class Served:
    """What ``observe`` found: serving workloads by version, the entry point's pods, the routes in effect."""

    workloads: dict[str, WorkloadInfo]
    entry: EntryInfo | None
    routes: RouteObservation | None


class RouteSetter(Protocol):
    """The narrow, router-specific part: where the routes live and how they are read back."""

    async def set_routes(self, routes: Routes) -> None:
        """Make ``routes`` effective; raise ``TrafficError`` or ``kube.KubeError`` if it is not (yet)."""
        ...

    async def get_routes(self) -> RouteObservation | None:
        """The versions that may still get requests, from every source; None when it cannot tell."""
        ...


class TrafficProvider(Protocol):
    name: str

    async def observe(self) -> Served:
        """Serving workloads, entry point and routes, as they are now."""
        ...

    async def apply(self, plan: Plan, obs: Observations) -> list[Event]:
        """Make the world match ``plan``; returns events the pass should post. ``TrafficError`` if routes failed."""
        ...
