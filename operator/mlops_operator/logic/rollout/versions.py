"""Which version should serve: ``spec.version``, or the newest Ready version under ``track``. Pure.

A pinned version that is missing or belongs to another model is a spec problem (``InvalidSpec``, the
same reasons every kind uses); one that exists but is not Ready yet is simply waited for. Under
``track: latestReady`` the newest Ready version wins (creation time, then name, so ties are stable);
Rejected and Failed versions are never candidates, and neither is a version that failed here
(``status.blockedVersions``: rolled back or aborted, during a rollout or after its promotion) until the
user asks with ``mlops.dev/retry``: ``track`` then follows the newest Ready version that did not fail,
and says which newer ones it skipped (so the phase can stay ``RolledBack``). A pinned ``spec.version`` is
an explicit choice and is never skipped (``abortedVersion`` still keeps a failed one from being retried).

HyperparameterSearch trials (label ``mlops.dev/hyperparametersearch``) are Ready versions of the same model,
but they are experiments: ``track`` skips them unless ``matchLabels`` asks for search output explicitly by
naming ``mlops.dev/hyperparametersearch`` or ``mlops.dev/best-of`` (the registered best trial). So a
deployment following a model never canaries each trial as it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.trial import LABEL_BEST_OF, LABEL_SEARCH
from mlops_operator.logic.references import Problem, Reference, check_reference
from mlops_operator.logic.rollout.state import Observations, VersionInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A track selector naming one of these keys asks for HyperparameterSearch output (trials or the best one).
SEARCH_LABELS = (LABEL_SEARCH, LABEL_BEST_OF)


@dataclass(frozen=True)
class Desired:
    """The resolved version (None when there is none to serve yet) and why not."""

    version: str | None
    problems: list[Problem] = field(default_factory=list)
    waiting: str = ""
    skipped: frozenset[str] = frozenset()  # blocked versions newer than ``version`` that track passed over


def _matches(info: VersionInfo, labels: dict[str, str] | None) -> bool:
    return all(info.labels.get(k) == v for k, v in (labels or {}).items())


def is_trial(info: VersionInfo) -> bool:
    return LABEL_SEARCH in info.labels


def follows_trials(labels: dict[str, str] | None) -> bool:
    """Whether a track selector explicitly asks for search trials."""
    return any(key in (labels or {}) for key in SEARCH_LABELS)


def trackable(info: VersionInfo, labels: dict[str, str] | None) -> bool:
    """A version ``track`` may follow (readiness aside): selected, and no search trial unless asked for."""
    return _matches(info, labels) and (follows_trials(labels) or not is_trial(info))


def _order(info: VersionInfo) -> tuple[datetime, str]:
    """Newest first by creation time, then name, so ties are stable."""
    return info.created_at or _EPOCH, info.name


def resolve(spec: ModelDeploymentSpec, obs: Observations, blocked: Iterable[str] = ()) -> Desired:
    if spec.version:
        info = obs.versions.get(spec.version)
        ref = Reference("ModelVersion", spec.version, "spec.version", model=spec.model)
        problem = check_reference(ref, None if info is None else {"spec": {"model": info.model}}, obs.namespace)
        if problem is not None:
            return Desired(None, [problem], problem.message)
        assert info is not None
        if not info.ready:
            return Desired(None, waiting=f"ModelVersion {info.name} is {info.phase or 'Pending'}; waiting for Ready")
        return Desired(info.name)
    labels = spec.track.match_labels if spec.track else None
    ready = [v for v in obs.versions.values() if v.model == spec.model and v.ready and _matches(v, labels)]
    trackable_ready = [v for v in ready if trackable(v, labels)]
    failed = set(blocked)
    followed = [v for v in trackable_ready if v.name not in failed]
    if not followed:
        trials = (f" ({len(ready)} Ready search trials are not followed unless track.matchLabels names "
                  f"{LABEL_SEARCH} or {LABEL_BEST_OF})") if ready and not trackable_ready else ""
        skipped = frozenset(v.name for v in trackable_ready)
        why = (f" ({', '.join(sorted(skipped))} failed here: annotate mlops.dev/retry to follow again)"
               if skipped else trials)
        return Desired(None, waiting=f"no Ready ModelVersion of model {spec.model} yet{why}", skipped=skipped)
    newest = max(followed, key=_order)
    skipped = frozenset(v.name for v in trackable_ready if v.name in failed and _order(v) > _order(newest))
    return Desired(newest.name, skipped=skipped)
