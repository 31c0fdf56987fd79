"""The types a rollout decision reads and writes: observations in, a plan and a new status out. Pure.

Why a typed view over the status dict: the strategies reason about a handful of fields (stable,
candidate, weight, step, when the step started, failed checks), and a dataclass makes those explicit
while ``RolloutStatus.to_dict`` writes back into a copy of the original dict, so fields this module does
not model (``endpoint``, ``observedGeneration``, fields a newer operator added) survive every pass.

Everything time-related is second precision, the precision Kubernetes stores: a decision compares
against what was written, never against a finer clock it could not have recorded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import format_time
from mlops_operator.logic.analysis import Check, MetricResult, parse_time
from mlops_operator.logic.status import Outcome


class Role(StrEnum):
    """What a version's pods do (also the ``mlops.dev/role`` label and the server's metric label)."""

    STABLE = "stable"
    CANDIDATE = "candidate"
    SHADOW = "shadow"
    PREVIEW = "preview"


MAX_ANALYSIS_ENTRIES = 60   # status.analysis keeps the newest entries (the CRD allows 100)
MAX_HISTORY_ENTRIES = 20    # status.history keeps the newest finished rollouts
MAX_BLOCKED_VERSIONS = 20   # status.blockedVersions keeps the newest failed versions (the CRD allows 20)


def truncate(now: datetime) -> datetime:
    """``now`` at second precision in UTC (what ``format_time`` stores)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).replace(microsecond=0)


# ------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True)
class VersionInfo:
    """What a decision needs to know about one ModelVersion of the model."""

    name: str
    model: str
    phase: str | None = None
    artifact_uri: str | None = None
    artifact_sha256: str | None = None
    created_at: datetime | None = None
    stage: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Deployable: passed its gates and has a verified artifact to load."""
        return self.phase == "Ready" and bool(self.artifact_uri)


@dataclass(frozen=True)
class WorkloadInfo:
    """The observed serving Deployment of one version."""

    version: str
    replicas: int                 # spec.replicas
    ready_replicas: int           # status.readyReplicas of the current pod template
    role: str | None = None       # the role its pods were launched with (kept: changing it restarts pods)
    updated: bool = True          # the Deployment controller has observed the latest spec
    replicas_owned: bool = True   # the operator's apply owns spec.replicas (else an autoscaler does)
    companions: frozenset[str] = frozenset()  # kinds made beside it, from its annotation (autoscaler, budget)
    compiled_model: str | None = None  # serving.compiledModel its pods were launched with
    problem: str | None = None    # why a pod of it is not Ready, when it says (e.g. a missing Secret)

    def ready_for(self, replicas: int) -> bool:
        """At least ``replicas`` (and at least one) pods of the current template are Ready."""
        return self.updated and self.ready_replicas >= max(1, replicas)


@dataclass(frozen=True)
class EntryInfo:
    """The pods behind the entry Service that no version owns: the builtin router's Deployment.

    A version can be Ready while clients still get "connection refused" from the entry Service, so a
    rollout is complete only once one of these pods is Ready too. Any Ready router pod serves the
    current routes (they are pushed to every router pod and kept in a ConfigMap it starts from), so
    one is enough; whether it runs the newest pod template does not matter.
    """

    deployment: str              # its name, for messages
    ready_replicas: int           # status.readyReplicas
    replicas: int | None = None   # spec.replicas; None: the Deployment does not exist (yet)

    def problem(self) -> str | None:
        """Why the entry point does not answer (None: at least one router pod is Ready)."""
        if self.ready_replicas >= 1:
            return None
        if self.replicas is None:
            return f"router Deployment {self.deployment} does not exist yet"
        return f"router Deployment {self.deployment} has no Ready pod (0/{self.replicas} Ready)"


@dataclass(frozen=True)
class RouteObservation:
    """What the traffic layer does now, read back from every place that holds it.

    ``referenced`` holds each version that any source (the durable config, any router replica) still
    sends requests or mirrored requests to: a version in it must not be scaled down yet.
    """

    referenced: frozenset[str]
    weight: int | None = None     # candidate weight in the durable config, when known


@dataclass(frozen=True)
class AnalysisResults:
    """The measurements of one analysis run, taken for ``version`` over the window ending at ``at``."""

    version: str
    at: datetime
    window: timedelta
    results: tuple[MetricResult, ...]


@dataclass(frozen=True)
class Observations:
    """A snapshot of the world taken once per pass; the decision reads nothing else."""

    namespace: str
    name: str                                   # the ModelDeployment (also its entry Service)
    versions: Mapping[str, VersionInfo]
    workloads: Mapping[str, WorkloadInfo]
    routes: RouteObservation | None = None      # None: the traffic layer could not be read
    entry: EntryInfo | None = None              # None: the entry Service selects version pods (or KServe's)
    metrics_online: bool | None = None          # None: not asked (no analysis due)
    analysis: AnalysisResults | None = None     # results of the run requested this pass
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Routes:
    """Where requests go: ``weight`` percent to the candidate, the rest to stable; a shadow is mirrored."""

    stable: str
    candidate: str | None = None
    weight: int = 0
    shadow: str | None = None
    mirror_percent: int = 0
    shadow_tolerance: float | None = None  # agreement tolerance for the shadow; None: the router's default

    def referenced(self) -> frozenset[str]:
        versions = {self.stable}
        if self.candidate and self.weight > 0:
            versions.add(self.candidate)
        if self.shadow and self.mirror_percent > 0:
            versions.add(self.shadow)
        return frozenset(versions)


@dataclass(frozen=True)
class WorkloadPlan:
    """A serving Deployment that must exist with ``replicas`` pods (None: its autoscaler decides)."""

    version: str
    role: Role
    replicas: int | None


@dataclass(frozen=True)
class AnalysisRequest:
    """What the handler must measure before deciding: ``version``'s checks over the last ``window``."""

    version: str
    role: Role
    window: timedelta
    carries_traffic: bool       # the version serves users now (errors then count as failures)
    checks: tuple[Check, ...] = ()


@dataclass
class Plan(Outcome):
    """The outcome of one rollout pass: the new status and the world that goes with it.

    Applied in order: workloads, routes, preview, then deletions (only of versions no route references),
    then ModelVersion stages. ``routes`` None leaves routing untouched (nothing Ready to route to yet).
    """

    workloads: tuple[WorkloadPlan, ...] = ()
    routes: Routes | None = None
    preview: str | None = None
    delete: tuple[str, ...] = ()
    stages: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ status


REQUEST_KINDS = ("promote", "abort", "retry")


@dataclass(frozen=True)
class PostPromotion:
    """The watch over a newly promoted ``version`` (``status.postPromotion``): analysis keeps running
    against it until ``until``, while ``previous`` (the stable it replaced) stays warm to roll back to."""

    version: str
    previous: str
    started_at: datetime
    until: datetime

    @classmethod
    def from_dict(cls, raw: Any) -> PostPromotion | None:
        if not isinstance(raw, Mapping):
            return None
        started, until = parse_time(raw.get("startedAt")), parse_time(raw.get("until"))
        version, previous = raw.get("version"), raw.get("previous")
        if not (version and previous and started and until):
            return None  # half a window is no window: nothing to roll back to safely
        return cls(str(version), str(previous), started, until)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "previous": self.previous, "startedAt": format_time(self.started_at),
                "until": format_time(self.until)}


@dataclass
class RolloutStatus:
    """The rollout fields of ``ModelDeployment.status`` (camelCase on the wire)."""

    raw: dict[str, Any]
    phase: str | None = None
    desired: str | None = None
    stable: str | None = None
    candidate: str | None = None
    weight: int = 0
    step: int | None = None
    step_started_at: datetime | None = None
    failed_checks: int = 0
    aborted: str | None = None
    analysis: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    handled: dict[str, str] = field(default_factory=dict)
    post: PostPromotion | None = None                       # status.postPromotion: the window in progress
    blocked: list[str] = field(default_factory=list)        # status.blockedVersions: track skips these

    @classmethod
    def from_dict(cls, status: Mapping[str, Any] | None) -> RolloutStatus:
        raw = copy.deepcopy(dict(status or {}))
        handled = raw.get("handledRequests") or {}
        return cls(
            raw=raw,
            phase=raw.get("phase"),
            desired=raw.get("desiredVersion"),
            stable=raw.get("stableVersion"),
            candidate=raw.get("candidateVersion"),
            weight=int(raw.get("canaryWeight") or 0),
            step=raw.get("currentStep"),
            step_started_at=parse_time(raw.get("stepStartedAt")),
            failed_checks=int(raw.get("failedChecks") or 0),
            aborted=raw.get("abortedVersion"),
            analysis=list(raw.get("analysis") or []),
            history=list(raw.get("history") or []),
            conditions=list(raw.get("conditions") or []),
            handled={k: str(v) for k, v in handled.items() if k in REQUEST_KINDS and v is not None},
            post=PostPromotion.from_dict(raw.get("postPromotion")),
            blocked=[str(v) for v in raw.get("blockedVersions") or [] if v],
        )

    def to_dict(self) -> dict[str, Any]:
        """The full new status; fields set to None are left out (the merge patch then removes them)."""
        out = copy.deepcopy(self.raw)
        fields = {
            "phase": self.phase,
            "desiredVersion": self.desired,
            "stableVersion": self.stable,
            "candidateVersion": self.candidate,
            "canaryWeight": self.weight,
            "currentStep": self.step,
            "stepStartedAt": format_time(self.step_started_at) if self.step_started_at else None,
            "failedChecks": self.failed_checks,
            "abortedVersion": self.aborted,
            "analysis": self.analysis[-MAX_ANALYSIS_ENTRIES:] or None,
            "history": self.history[-MAX_HISTORY_ENTRIES:] or None,
            "conditions": self.conditions,
            "handledRequests": dict(self.handled) or None,
            "postPromotion": self.post.to_dict() if self.post else None,
            "blockedVersions": self.blocked[-MAX_BLOCKED_VERSIONS:] or None,
        }
        for key, value in fields.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out
