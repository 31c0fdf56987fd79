"""Status bookkeeping shared by every kind: what changed, and how long to back off.

Pure helpers so "write status only when it changed" and "never a hot loop" are each decided in one
place and tested with plain dicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import (
    BatchPredictionPhase,
    FeatureSetPhase,
    HyperparameterSearchPhase,
    ModelDeploymentPhase,
    ModelVersionPhase,
    RetrainPolicyPhase,
    get_condition,
    set_condition,
)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a step asks for; posted only after the step's status was written."""

    type: str  # Normal | Warning
    reason: str
    message: str


def status_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch turning ``old`` into ``new`` at the top level; ``{}`` when nothing changed.

    Only top-level fields that differ are sent, so fields another writer owns (e.g. ``stage`` of a
    ModelVersion, kept by ModelDeployments) are never rewritten from a stale copy. A field present in
    ``old`` but dropped from ``new`` is removed (``None`` in a merge patch).

    >>> status_delta({"phase": "Pending", "stage": "None"}, {"phase": "Training", "stage": "None"})
    {'phase': 'Training'}
    """
    delta: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    delta.update({key: None for key in old if key not in new})
    return delta


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential back-off after ``failures`` consecutive transient failures (0 = the first one).

    >>> [backoff_delay(n, 5, 60) for n in range(6)]
    [5, 10, 20, 40, 60, 60]
    """
    return min(cap, base * (2 ** min(max(failures, 0), 16)))


RETRYING = "Retrying"


def mark_retrying(status: Mapping[str, Any], reason: str, message: str, *, generation: int | None,
                  now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """``status`` with ``Retrying=True`` (reason names the trouble); a Warning event when it is news."""
    new = copy.deepcopy(dict(status))
    before = get_condition(new.get("conditions"), RETRYING) or {}
    new["conditions"] = set_condition(new.get("conditions"), type=RETRYING, status="True", reason=reason,
                                      message=message, observed_generation=generation, now=now)
    news = before.get("status") != "True" or before.get("reason") != reason
    return new, [Event("Warning", reason, message)] if news else []


def mark_condition(status: Mapping[str, Any], type_: str, value: str, reason: str, message: str, *,
                   generation: int | None, now: datetime) -> dict[str, Any]:
    """``status`` with one condition set (the others untouched)."""
    new = copy.deepcopy(dict(status))
    new["conditions"] = set_condition(new.get("conditions"), type=type_, status=value, reason=reason,
                                      message=message, observed_generation=generation, now=now)
    return new


# ------------------------------------------------------------------------------- kstatus conventions
#
# Generic tools (Flux's health checks, kstatus, `kubectl wait`) know nothing of our phases. Besides the
# kind's own ``Ready``, every status therefore carries two abnormal-true conditions computed from the
# phase: ``Reconciling`` (True while the operator is still working towards the spec) and ``Stalled``
# (True when it has stopped short of it: a terminal failure that only a change by the user ends).

RECONCILING, STALLED, INVALID_SPEC = "Reconciling", "Stalled", "InvalidSpec"


@dataclass(frozen=True)
class PhaseMeaning:
    """How one kind's phases read for generic tools. A phase neither working nor failed is settled
    (success, or a wait on the user such as a pause or a suspension: nothing to do, nothing failed).

    Argo CD has two more words than kstatus: ``suspended`` settled phases wait on the user (Suspended),
    and ``impaired`` working phases fall short of what was asked while the operator converges (Degraded
    for Argo CD, as a Deployment short of replicas is; still Reconciling for kstatus)."""

    working: frozenset[str]
    failed: frozenset[str]
    suspended: frozenset[str] = frozenset()
    impaired: frozenset[str] = frozenset()


PHASE_MEANINGS: dict[str, PhaseMeaning] = {
    "FeatureSet": PhaseMeaning(
        working=frozenset({FeatureSetPhase.PENDING, FeatureSetPhase.MATERIALIZING}),
        failed=frozenset({FeatureSetPhase.FAILED})),
    "ModelVersion": PhaseMeaning(
        working=frozenset({ModelVersionPhase.PENDING, ModelVersionPhase.TRAINING, ModelVersionPhase.VALIDATING}),
        failed=frozenset({ModelVersionPhase.REJECTED, ModelVersionPhase.FAILED})),
    # Degraded: serving pods are missing; the Deployment is still converging (a progress deadline turns
    # a candidate's failure into RolledBack). Paused waits on the user.
    "ModelDeployment": PhaseMeaning(
        working=frozenset({ModelDeploymentPhase.PENDING, ModelDeploymentPhase.PROGRESSING,
                           ModelDeploymentPhase.DEGRADED}),
        failed=frozenset({ModelDeploymentPhase.ROLLED_BACK, ModelDeploymentPhase.FAILED}),
        suspended=frozenset({ModelDeploymentPhase.PAUSED}),
        impaired=frozenset({ModelDeploymentPhase.DEGRADED})),
    # A policy in force is settled whatever it is doing: a retrain is the policy's effect, not its
    # convergence, and a sync must not wait for one.
    "RetrainPolicy": PhaseMeaning(
        working=frozenset(),
        failed=frozenset({RetrainPolicyPhase.FAILED}),
        suspended=frozenset({RetrainPolicyPhase.SUSPENDED})),
    "HyperparameterSearch": PhaseMeaning(
        working=frozenset({HyperparameterSearchPhase.PENDING, HyperparameterSearchPhase.RUNNING}),
        failed=frozenset({HyperparameterSearchPhase.FAILED})),
    # Pending is a wait for the next trigger (a schedule slot, a request): settled, like a policy in force.
    "BatchPrediction": PhaseMeaning(
        working=frozenset({BatchPredictionPhase.RUNNING}),
        failed=frozenset({BatchPredictionPhase.FAILED})),
}


def argocd_health(kind: str, phase: str) -> str:
    """Argo CD's health word for a phase of ``kind``, from the same table as the kstatus verdicts; the
    chart's health checks are generated from it (``logic.argocd_health``).

    >>> [argocd_health("ModelDeployment", p) for p in ("Succeeded", "Pending", "Paused", "Degraded", "RolledBack")]
    ['Healthy', 'Progressing', 'Suspended', 'Degraded', 'Degraded']
    """
    meaning = PHASE_MEANINGS[kind]
    if phase in meaning.failed or phase in meaning.impaired:
        return "Degraded"
    if phase in meaning.suspended:
        return "Suspended"
    if phase in meaning.working:
        return "Progressing"
    return "Healthy"


@dataclass(frozen=True)
class Verdict:
    """One condition's value as generic tools read it."""

    status: str
    reason: str
    message: str


def kstatus_verdicts(kind: str, status: Mapping[str, Any], generation: int | None) -> tuple[Verdict, Verdict]:
    """``(Reconciling, Stalled)`` for a kind's status; at most one of them is True.

    In order: a failed phase or an ``InvalidSpec`` the runtime found is Stalled (the user must act); a
    status behind the spec's generation, a transient trouble being retried (``Retrying``) or a working
    phase is Reconciling; anything else is settled. Reasons and messages come from the condition that
    explains the verdict (``Ready``'s for a phase), so ``kubectl get`` and Flux show the same words.

    >>> r, s = kstatus_verdicts("ModelVersion", {"phase": "Rejected", "observedGeneration": 1,
    ...     "conditions": [{"type": "Ready", "status": "False", "reason": "GatesFailed", "message": "accuracy"}]}, 1)
    >>> (r.status, s.status, s.reason)
    ('False', 'True', 'GatesFailed')
    """
    meaning = PHASE_MEANINGS[kind]
    conditions = status.get("conditions")
    phase = status.get("phase")
    ready = get_condition(conditions, "Ready") or {}
    invalid = get_condition(conditions, INVALID_SPEC) or {}
    retrying = get_condition(conditions, RETRYING) or {}
    observed = status.get("observedGeneration")
    settled = Verdict("False", str(phase or "Unknown"), ready.get("message") or f"phase {phase}")

    def from_ready(default_reason: str) -> Verdict:
        return Verdict("True", ready.get("reason") or default_reason, ready.get("message") or f"phase {phase}")

    if phase in meaning.failed:
        return settled, from_ready(str(phase))
    if invalid.get("status") == "True":
        return settled, Verdict("True", invalid.get("reason") or INVALID_SPEC, invalid.get("message") or "")
    if generation is not None and observed != generation:
        return (Verdict("True", "NewGeneration", f"generation {generation} not yet observed (status is of {observed})"),
                Verdict("False", "NewGeneration", "not yet observed"))
    if retrying.get("status") == "True":
        return (Verdict("True", retrying.get("reason") or RETRYING, retrying.get("message") or ""),
                Verdict("False", "Retrying", "a transient trouble is being retried"))
    if phase is None or phase in meaning.working:
        reconciling = from_ready(str(phase or "Pending"))
        return reconciling, Verdict("False", reconciling.reason, "in progress")
    return settled, settled


def with_kstatus(kind: str, status: Mapping[str, Any], generation: int | None, now: datetime) -> dict[str, Any]:
    """``status`` with ``Reconciling`` and ``Stalled`` set from its phase and conditions (see
    ``kstatus_verdicts``); unchanged verdicts keep their ``lastTransitionTime``, so no extra write."""
    reconciling, stalled = kstatus_verdicts(kind, status, generation)
    new = dict(status)
    conditions = new.get("conditions")
    for type_, verdict in ((RECONCILING, reconciling), (STALLED, stalled)):
        conditions = set_condition(conditions, type=type_, status=verdict.status, reason=verdict.reason,
                                   message=verdict.message[:32768], observed_generation=generation, now=now)
    new["conditions"] = conditions
    return new


@dataclass
class Outcome:
    """What one pass decided, for every kind: the whole new status, the events to post after it is written,
    and when to look again. Kinds whose act step changes the world add the fields it reads (a Job to
    create, objects to patch, a rollout plan); the kernel (``handlers.reconciler``) reads only these.
    """

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    retry: bool = False                  # transient trouble: back off before the next pass
    requeue_after: float | None = None   # nothing wrong, but decide again within this many seconds
    acted: bool = False                  # set by the act step: it changed the world beyond status


@dataclass
class JobOutcome(Outcome):
    """The outcome of a kind driven by runtime Jobs (ModelVersion, FeatureSet, BatchPrediction)."""

    job: dict[str, Any] | None = None  # a Job manifest to create (AlreadyExists is success)


class Pass:
    """One decision pass over an object: a working copy of its status and the events the pass earned.

    ``condition_limit`` bounds condition messages (None: unbounded; event messages are cut where the kernel
    posts them); ``done`` builds the kind's ``Outcome`` type (``outcome``) from the working copy plus the
    actions it is given.
    """

    outcome: type[Outcome] = JobOutcome
    condition_limit: int | None = None

    def __init__(self, metadata: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> None:
        self.now = now
        self.generation = metadata.get("generation")
        self.status: dict[str, Any] = copy.deepcopy(dict(status))
        self.events: list[Event] = []

    @property
    def conditions(self) -> list[dict[str, Any]] | None:
        """The working copy's conditions in their wire form (a typed pass keeps them in its model)."""
        return self.status.get("conditions")

    @conditions.setter
    def conditions(self, value: list[dict[str, Any]]) -> None:
        self.status["conditions"] = value

    def condition(self, type_: str, status: str, reason: str, message: str, generation: int | None = None) -> None:
        self.conditions = set_condition(
            self.conditions, type=type_, status=status, reason=reason, message=message[:self.condition_limit],
            observed_generation=self.generation if generation is None else generation, now=self.now)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def recovered(self) -> None:
        """Close a ``Retrying=True`` left by an earlier pass: this one got through."""
        if (get_condition(self.conditions, RETRYING) or {}).get("status") == "True":
            self.condition(RETRYING, "False", "Recovered", "the last transient failure cleared")

    def done(self, **actions: Any) -> Any:
        return self.outcome(status=self.status, events=self.events, **actions)

    def retrying(self, reason: str, message: str) -> Any:
        """Transient trouble: ``Retrying=True`` (a Warning when it is news) and a back-off."""
        marked, events = mark_retrying({"conditions": self.conditions}, reason, message, generation=self.generation,
                                       now=self.now)
        self.conditions = marked["conditions"]
        self.events.extend(events)
        return self.done(retry=True)
