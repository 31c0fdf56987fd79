"""Deletion and retention (pure): who carries a finalizer, whether a deletion may proceed, what retention prunes.

Finalizers. Kopf puts its finalizer (``mlops.dev/finalizer``) on exactly the objects an ``on.delete``
handler's filters match, and takes it off again on the first event of that object after they stop
matching (``kopf._core.reactor.processing``: ``deletion_must_be_blocked`` is evaluated on every event).
The filters are the predicates below, evaluated on the object alone:

- ``mlops.dev/delete-artifacts: "true"`` (ModelVersion, FeatureSet): there is work to do at deletion;
- a ModelVersion whose ``status.stage`` is Production or Staging: some ModelDeployment may serve it, so
  its deletion must be able to wait. The stage is written by the rollout on the version itself in the same
  pass that routes traffic to it, which is what makes it usable as a filter (an event of the object);
  ModelDeployments' status is not (no event reaches the version when it changes).

The stage is an over-approximation of "served": a stable version replaced by another keeps stage
Production until a rollout archives it, and a deleted ModelDeployment leaves its last stages behind. So
the stage only decides who may need to wait; whether the deletion waits is decided at deletion time from
the authority, the live ModelDeployments' ``status.stableVersion`` / ``status.candidateVersion`` in the
same namespace (``routed_by``). Nothing else carries a finalizer: the timers that drive reconciliation
are detached from it (``handlers.finalizers``), so without the operator such objects delete at once.

Retention. A RetrainPolicy keeps the ``historyLimit`` newest finished ModelVersions it created and deletes
older ones; a HyperparameterSearch with ``retainBest`` deletes the trials outside the best N once it has
ended. Neither ever deletes a version that may be served (stage Production/Staging, or routed by a live
ModelDeployment), one still training, nor (policy) the newest Ready one. Pruning a version whose
artifacts should go is two steps (``prune_step``): set the annotation, then — once Kopf has put its
finalizer on it, so the delete handler is sure to run — delete it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence

from mlops_operator.logic.modelversion import DELETE_ARTIFACTS

FINALIZER = "mlops.dev/finalizer"
SERVED_STAGES = frozenset({"Production", "Staging"})
FINISHED_PHASES = frozenset({"Ready", "Rejected", "Failed"})
DELETING = "Deleting"  # condition type on a ModelVersion whose deletion waits
IN_USE = "InUse"


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def wants_artifacts_deleted(meta: Mapping[str, Any]) -> bool:
    """The object asks for its files to go with it."""
    return (meta.get("annotations") or {}).get(DELETE_ARTIFACTS) == "true"


def may_be_served(status: Mapping[str, Any] | None) -> bool:
    """A rollout marked the version Production or Staging (see the module docstring: an over-approximation)."""
    return (status or {}).get("stage") in SERVED_STAGES


def model_version_needs_finalizer(meta: Mapping[str, Any], status: Mapping[str, Any] | None) -> bool:
    """Whether a ModelVersion carries the finalizer: artifacts to delete, or a deletion that may have to wait."""
    return wants_artifacts_deleted(meta) or may_be_served(status)


def feature_set_needs_finalizer(meta: Mapping[str, Any]) -> bool:
    """Whether a FeatureSet carries the finalizer: only when its snapshots are to be deleted with it."""
    return wants_artifacts_deleted(meta)


# --------------------------------------------------------------------------------- protection


def routed_by(version: str, deployments: Iterable[Mapping[str, Any]]) -> list[str]:
    """``"<deployment> (stable|candidate|rollback target)"`` for every ModelDeployment whose status routes to
    ``version`` or keeps it warm to roll back to after a promotion (``status.postPromotion.previous``)."""
    users = []
    for md in deployments:
        status = md.get("status") or {}
        roles = [role for role, key in (("stable", "stableVersion"), ("candidate", "candidateVersion"))
                 if status.get(key) == version]
        if (status.get("postPromotion") or {}).get("previous") == version:
            roles.append("rollback target")
        if roles:
            users.append(f"{_meta(md).get('name', '?')} ({', '.join(roles)})")
    return sorted(users)


class Action(StrEnum):
    WAIT = "Wait"                          # still routed to: keep the finalizer, look again later
    DELETE_ARTIFACTS = "DeleteArtifacts"   # delete the own prefix, then release
    RELEASE = "Release"                    # nothing (more) to do: let the object go


@dataclass(frozen=True)
class DeletionStep:
    action: Action
    reason: str
    message: str


def decide_model_version_deletion(name: str, users: Sequence[str], artifacts: tuple[bool, str]) -> DeletionStep:
    """What the delete handler does now. ``users``: ``routed_by``; ``artifacts``: ``should_delete_artifacts``.

    In use wins over everything (the pvc-protection pattern): nothing is deleted from under a server, and
    the message says how to let the deletion proceed.
    """
    if users:
        return DeletionStep(Action.WAIT, IN_USE, (
            f"ModelVersion {name} is still served by ModelDeployment {', '.join(users)}; it is deleted once no "
            "ModelDeployment routes to it: point their spec.version at another version and let the rollout "
            "finish, or delete them"))
    delete, why = artifacts
    if delete:
        return DeletionStep(Action.DELETE_ARTIFACTS, "DeletingArtifacts", why)
    return DeletionStep(Action.RELEASE, "ArtifactsRetained", why)


# ----------------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class Version:
    """A ModelVersion as retention sees it."""

    name: str
    created: str = ""          # creationTimestamp (RFC 3339 sorts as text)
    phase: str | None = None
    served: bool = False       # stage Production/Staging or routed by a live ModelDeployment
    deleting: bool = False     # has a deletionTimestamp already


def version_of(body: Mapping[str, Any], routed: frozenset[str] = frozenset()) -> Version:
    meta, status = _meta(body), body.get("status") or {}
    name = meta.get("name", "")
    return Version(name, meta.get("creationTimestamp") or "", status.get("phase"),
                   served=may_be_served(status) or name in routed, deleting=bool(meta.get("deletionTimestamp")))


def beyond_history_limit(versions: Iterable[Version], limit: int) -> list[str]:
    """The versions a RetrainPolicy deletes: older than its ``limit`` newest ones, finished, not served, not
    the newest Ready one, not already being deleted. Oldest first."""
    newest_first = sorted(versions, key=lambda v: (v.created, v.name), reverse=True)
    newest_ready = next((v.name for v in newest_first if v.phase == "Ready"), None)
    out = [v.name for v in newest_first[limit:]
           if v.phase in FINISHED_PHASES and not v.served and not v.deleting and v.name != newest_ready]
    return out[::-1]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def best_trials(trials: Sequence[Mapping[str, Any]], keep: int, minimize: bool) -> list[str]:
    """The names of the ``keep`` best Succeeded trials (earliest first on a tie), best first."""
    done = [(i, t) for i, t in enumerate(trials) if t.get("state") == "Succeeded" and _finite(t.get("value"))]
    sign = 1.0 if minimize else -1.0
    ranked = sorted(done, key=lambda it: (sign * it[1]["value"], it[0]))
    return [t["name"] for _, t in ranked[:keep]]


def trials_beyond_best(trials: Sequence[Mapping[str, Any]], keep: int, minimize: bool,
                       protected: Iterable[str] = ()) -> list[str]:
    """Trials a finished search deletes: every one outside the best ``keep`` and ``protected`` (the
    registered version), in trial order. Trials still active are never among them (the search ended)."""
    kept = set(best_trials(trials, keep, minimize)) | set(protected)
    return [t["name"] for t in trials if t["name"] not in kept and t.get("state") in ("Succeeded", "Failed", "Pruned")]


class Prune(StrEnum):
    GONE = "Gone"            # nothing left to do
    SKIP = "Skip"            # may be served: never pruned
    ANNOTATE = "Annotate"    # set mlops.dev/delete-artifacts first
    WAIT = "Wait"            # annotated; Kopf has not put its finalizer on it yet
    DELETE = "Delete"


def prune_step(body: Mapping[str, Any] | None, *, delete_artifacts: bool, served: bool = False) -> Prune:
    """The next step of pruning one version (``body`` None: it is gone).

    With ``delete_artifacts`` the annotation goes on first, and the delete waits until the finalizer is
    there: deleting before Kopf noticed the annotation would remove the object without its files.
    """
    if body is None or _meta(body).get("deletionTimestamp"):
        return Prune.GONE
    if served or may_be_served(body.get("status")):
        return Prune.SKIP
    meta = _meta(body)
    if delete_artifacts and not wants_artifacts_deleted(meta):
        return Prune.ANNOTATE
    if wants_artifacts_deleted(meta) and FINALIZER not in (meta.get("finalizers") or []):
        return Prune.WAIT
    return Prune.DELETE
