"""Traffic providers behind one interface: the factory picks one per router, each applies in the crash-safe
order (workloads, entry point, routes, preview, deletions) and reads routes back as "cannot tell" on trouble."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment, Router
from mlops_operator.builders.serving import preview_name, version_name
from mlops_operator.logic.rollout.state import Observations, Plan, Role, Routes, VersionInfo, WorkloadPlan
from mlops_operator.providers import kube
from mlops_operator.providers.traffic import PROVIDERS, ServingContext, TrafficError, deployments, provider_for
from mlops_operator.providers.traffic.builtin import apply_entry as builtin_entry
from mlops_operator.providers.traffic.deployments import DeploymentServing
from mlops_operator.logic.rollout.workloads import kserve_routes
from mlops_operator.providers.traffic.kserve import KServeServing

pytestmark = pytest.mark.unit

URI = "s3://mlops/models/breast-cancer/v1/"


def context(traffic: dict[str, Any] | None = None, serving: dict[str, Any] | None = None,
            strategy: dict[str, Any] | None = None) -> ServingContext:
    spec: dict[str, Any] = {"model": "breast-cancer", "version": "v1"}
    spec.update({k: v for k, v in (("traffic", traffic), ("serving", serving), ("strategy", strategy)) if v})
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1", "generation": 1}, "spec": spec}
    versions = {"v1": VersionInfo("v1", "breast-cancer", "Ready", URI, "ab" * 32)}
    return ServingContext(owner=body, md=ModelDeployment.from_body(body), versions=versions)


KSERVE = {"traffic": {"router": "kserve"}, "serving": {"runtime": "kserve"}}


@pytest.mark.parametrize("kw, name, kind", [
    ({}, "builtin", DeploymentServing),
    ({"traffic": {"router": "builtin"}}, "builtin", DeploymentServing),
    ({"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "public"}]}}, "gatewayAPI", DeploymentServing),
    ({"traffic": {"router": "service"}}, "service", DeploymentServing),
    (KSERVE, "kserve", KServeServing),
])
def test_given_a_router_when_the_factory_is_asked_then_it_returns_that_routers_provider(kw, name, kind):
    provider = provider_for(context(**kw))
    assert isinstance(provider, kind) and provider.name == name


def test_given_every_router_the_api_admits_then_the_factory_has_a_provider_for_it():
    assert set(PROVIDERS) == set(Router)


class Recorder:
    """Every write a provider makes, in order, and a route setter whose read-back can fail."""

    def __init__(self, monkeypatch, fail_reads: bool = False):
        self.calls: list[str] = []
        self.fail_reads = fail_reads

        async def apply(obj: dict[str, Any], manager: str = kube.FIELD_MANAGER) -> dict[str, Any]:
            self.calls.append(f"apply {obj['kind']} {obj['metadata']['name']}")
            return obj

        async def delete(path: str, **_: Any) -> None:
            self.calls.append(f"delete {path.rsplit('/', 2)[-2]} {path.rsplit('/', 1)[-1]}")

        async def nothing(*_: Any, **__: Any) -> list[Any]:
            return []

        for module in (deployments, deployments.scaling):
            monkeypatch.setattr(module, "apply_object", apply)
        monkeypatch.setattr(kube, "delete", delete)
        monkeypatch.setattr(kube, "list_items", nothing)

    async def set_routes(self, routes: Routes) -> None:
        self.calls.append(f"routes {routes.stable}->{routes.candidate}@{routes.weight}")

    async def get_routes(self) -> Any:
        if self.fail_reads:
            raise TrafficError("a replica did not answer")
        return None


def observations(ctx: ServingContext) -> Observations:
    return Observations(namespace="team-a", name="bc", versions=dict(ctx.versions), workloads={})


def test_given_a_plan_when_a_deployment_provider_applies_it_then_workloads_entry_routes_preview_deletions_in_order(
        monkeypatch):
    rec = Recorder(monkeypatch)
    ctx = context(strategy={"type": "BlueGreen"})
    entries: list[str] = []

    async def entry(c: ServingContext, routes: Routes) -> None:
        rec.calls.append(f"entry {routes.stable}")
        entries.append(c.name)

    provider = DeploymentServing("test", ctx, rec, apply_entry=entry)
    plan = Plan(status={}, workloads=(WorkloadPlan("v1", Role.STABLE, 1),), routes=Routes("v1", "v2", 0),
                preview="v2", delete=("v0",))
    asyncio.run(provider.apply(plan, observations(ctx)))
    v1, v0 = version_name("bc", "v1"), version_name("bc", "v0")
    assert rec.calls == [f"apply Deployment {v1}", f"apply Service {v1}", "entry v1", "routes v1->v2@0",
                         f"apply Service {preview_name('bc')}", f"delete services {v0}", f"delete deployments {v0}"]
    assert entries == ["bc"]


def test_given_no_routes_planned_when_applied_then_neither_entry_nor_routes_are_touched(monkeypatch):
    rec = Recorder(monkeypatch)
    ctx = context()
    provider = DeploymentServing("test", ctx, rec, apply_entry=builtin_entry)
    asyncio.run(provider.apply(Plan(status={}, workloads=(WorkloadPlan("v1", Role.STABLE, 1),)), observations(ctx)))
    v1 = version_name("bc", "v1")
    assert rec.calls == [f"apply Deployment {v1}", f"apply Service {v1}"]


def test_given_a_route_setter_that_cannot_be_read_when_observed_then_routes_are_cannot_tell(monkeypatch):
    rec = Recorder(monkeypatch, fail_reads=True)
    served = asyncio.run(DeploymentServing("test", context(), rec).observe())
    assert served.routes is None and served.workloads == {} and served.entry is None


@pytest.mark.parametrize("workloads, routes, expected", [
    ((), None, None),
    ((WorkloadPlan("v1", Role.STABLE, 1),), None, Routes("v1")),
    ((WorkloadPlan("v1", Role.STABLE, 1), WorkloadPlan("v2", Role.PREVIEW, 1)), Routes("v1"), Routes("v1", "v2", 0)),
    ((WorkloadPlan("v1", Role.STABLE, 1),), Routes("v1", "v2", 30), Routes("v1", "v2", 30)),
    ((WorkloadPlan("v1", Role.STABLE, 1),), Routes("v1"), Routes("v1")),
])
def test_given_a_plan_when_kserve_routes_it_then_the_latest_revision_is_always_named(workloads, routes, expected):
    assert kserve_routes(Plan(status={}, workloads=workloads, routes=routes)) == expected


def test_given_a_service_router_mid_canary_when_routes_are_read_back_then_every_serving_version_may_get_requests(
        monkeypatch):
    from mlops_operator.builders.serving import VERSION_ANNOTATION, build_entry_service
    from mlops_operator.providers.traffic.service import ServiceRouter, service_selector

    ctx = context(traffic={"router": "service"})
    entry = build_entry_service(ctx.owner, ctx.model, service_selector("bc", Routes("v1", "v2", 50)))
    deployments_seen = [{"metadata": {"name": version_name("bc", v), "annotations": {VERSION_ANNOTATION: v}},
                         "spec": {"replicas": 1}, "status": {}} for v in ("v1", "v2")]

    async def get(path: str) -> dict[str, Any]:
        return entry

    async def list_items(path: str, selector: str | None = None) -> list[dict[str, Any]]:
        return deployments_seen

    monkeypatch.setattr(kube, "get", get)
    monkeypatch.setattr(kube, "list_items", list_items)
    routes = asyncio.run(ServiceRouter(ctx.owner, ctx.model).get_routes())
    assert routes is not None and routes.referenced == frozenset({"v1", "v2"})
