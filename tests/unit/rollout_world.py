"""A small simulated world for the rollout state machines: the scheduler ticks, the plan is applied.

Not a mock of the decision: ``decide`` and ``analysis_request`` run unchanged; this only plays the
cluster's part (pods become Ready after a delay, or never; the builtin router's Deployment appears with
the first routes and its pod is Ready after a delay; routes are what the last plan set; metrics are
whatever the test says) and carries status from one pass to the next, as the apiserver would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.logic.rollout import analysis_request, decide
from mlops_operator.logic.rollout.state import (
    AnalysisRequest,
    AnalysisResults,
    EntryInfo,
    MetricResult,
    Observations,
    Plan,
    RouteObservation,
    Routes,
    VersionInfo,
    WorkloadInfo,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
NS, NAME, MODEL = "team-a", "bc", "breast-cancer"
ROUTER = "mdep-bc-router"

Metrics = Callable[[AnalysisRequest, datetime], list[MetricResult]]


def spec(**fields: Any) -> ModelDeploymentSpec:
    """A valid spec from camelCase fields (model defaults to breast-cancer, version to v1)."""
    body = {"model": MODEL}
    body.update(fields)
    if "version" not in body and "track" not in body:
        body["version"] = "v1"
    return ModelDeploymentSpec.model_validate(body)


def version(name: str, *, created: int = 0, phase: str = "Ready", model: str = MODEL, **kw: Any) -> VersionInfo:
    return VersionInfo(name=name, model=model, phase=phase, artifact_uri=f"s3://mlops/models/{model}/{name}/",
                       artifact_sha256="a" * 64, created_at=T0 + timedelta(minutes=created), **kw)


def passing(value: float = 0.0, samples: int = 500) -> Metrics:
    """Every check measures ``value`` on ``samples`` requests (0.0 passes error rate and latency)."""
    def measure(req: AnalysisRequest, at: datetime) -> list[MetricResult]:
        return [MetricResult(name, 1.0 if name == "shadow-agreement" else value, samples) for name in CHECK_NAMES]
    return measure


def constant(**by_name: MetricResult) -> Metrics:
    return lambda req, at: list(by_name.values())


CHECK_NAMES = ("error-rate", "latency-p99", "shadow-agreement")


@dataclass
class World:
    versions: dict[str, VersionInfo]
    now: datetime = T0
    status: dict[str, Any] = field(default_factory=dict)
    workloads: dict[str, WorkloadInfo] = field(default_factory=dict)
    routes: Routes | None = None
    born: dict[str, datetime] = field(default_factory=dict)
    ready_delay: timedelta = timedelta(seconds=10)
    broken: set[str] = field(default_factory=set)
    problems: dict[str, str] = field(default_factory=dict)  # what a not-Ready version's pods report
    metrics: Metrics = field(default_factory=passing)
    online: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    routes_readable: bool = True
    measured: list[AnalysisRequest] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    router_born: datetime | None = None                  # when the builtin router's Deployment appeared
    router_delay: timedelta = timedelta(seconds=5)       # until its pod is Ready
    router_down: bool = False                            # its pods are not Ready (crash loop, evicted)
    autoscaled_to: int | None = None                     # replicas an autoscaler gives what the plan leaves to it

    def observe(self, md: ModelDeploymentSpec | None = None) -> Observations:
        routes = None
        if self.routes_readable:
            routes = RouteObservation(self.routes.referenced() if self.routes else frozenset(),
                                      self.routes.weight if self.routes else None)
        workloads = {v: replace(w, ready_replicas=w.replicas if self.is_up(v) else 0,
                                problem=None if self.is_up(v) else self.problems.get(v))
                     for v, w in self.workloads.items()}
        entry = self.router_entry() if md is None or builtin_router(md) else None
        return Observations(namespace=NS, name=NAME, versions=dict(self.versions), workloads=workloads,
                            routes=routes, entry=entry, metrics_online=self.online,
                            annotations=dict(self.annotations), generation=1)

    def router_entry(self) -> EntryInfo:
        if self.router_born is None:
            return EntryInfo(ROUTER, 0)
        up = not self.router_down and self.now - self.router_born >= self.router_delay
        return EntryInfo(ROUTER, 1 if up else 0, 1)

    def tick(self, md: ModelDeploymentSpec, seconds: float = 10) -> Plan:
        """One pass at ``now``, the plan applied, then the clock moves on by ``seconds``."""
        obs = self.observe(md)
        request = analysis_request(md, self.status, obs, self.now)
        if request is not None:
            self.measured.append(request)
            results = tuple(self.metrics(request, self.now)) if self.online else tuple(
                MetricResult(n, None, None, "prometheus unreachable") for n in CHECK_NAMES)
            obs = replace(obs, analysis=AnalysisResults(request.version, self.now, request.window, results))
        plan = decide(md, self.status, obs, self.now)
        self.apply(plan)
        self.plans.append(plan)
        self.now += timedelta(seconds=seconds)
        return plan

    def apply(self, plan: Plan) -> None:
        self.status = plan.status
        for w in plan.workloads:
            self.born.setdefault(w.version, self.now)
            old = self.workloads.get(w.version)
            replicas = w.replicas if w.replicas is not None else self.autoscaled_to or (old.replicas if old else 1)
            self.workloads[w.version] = WorkloadInfo(w.version, replicas, 0, old.role if old else w.role)
        for v in plan.delete:
            self.workloads.pop(v, None)
            self.born.pop(v, None)
        if plan.routes is not None:
            self.routes = plan.routes
            if self.router_born is None:  # the handler applies the router with the first routes
                self.router_born = self.now
        for v, stage in plan.stages.items():
            self.versions[v] = replace(self.versions[v], stage=stage)

    def is_up(self, v: str) -> bool:
        """Pods are Ready ``ready_delay`` after their Deployment appeared (never when broken)."""
        return v not in self.broken and self.now - self.born[v] >= self.ready_delay

    def run(self, md: ModelDeploymentSpec, ticks: int, seconds: float = 10) -> list[Plan]:
        return [self.tick(md, seconds) for _ in range(ticks)]

    def until(self, md: ModelDeploymentSpec, predicate: Callable[[World], bool], limit: int = 200,
              seconds: float = 10) -> None:
        for _ in range(limit):
            if predicate(self):
                return
            self.tick(md, seconds)
        raise AssertionError(f"condition not reached in {limit} ticks; status={self.status}")

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")


def builtin_router(md: ModelDeploymentSpec) -> bool:
    return md.traffic is None or md.traffic.router == "builtin"


def serving(md: ModelDeploymentSpec, *names: str, stable: str = "v1") -> World:
    """A world where ``stable`` already serves all traffic (after its first rollout) plus other versions."""
    world = World(versions={n: version(n, created=i) for i, n in enumerate((stable, *names))})
    first = spec(model=MODEL, version=stable)
    world.until(first, lambda w: w.status.get("stableVersion") == stable and w.phase == "Succeeded")
    world.tick(first)  # the pass after the promotion removes nothing and settles
    return world


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def history_events(status: dict) -> list[tuple[str, str]]:
    return [(h["version"], h["event"]) for h in status.get("history", [])]
