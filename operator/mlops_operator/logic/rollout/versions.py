"""Which version should serve: ``spec.version``, or the newest Ready version under ``track``. Pure.

A pinned version that is missing or belongs to another model is a spec problem (``InvalidSpec``, the
same reasons every kind uses); one that exists but is not Ready yet is simply waited for. Under
``track: latestReady`` the newest Ready version wins (creation time, then name, so ties are stable);
Rejected and Failed versions are never candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.logic.references import Problem, Reference, check_reference
from mlops_operator.logic.rollout.state import Observations, VersionInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Desired:
    """The resolved version (None when there is none to serve yet) and why not."""

    version: str | None
    problems: list[Problem] = field(default_factory=list)
    waiting: str = ""


def _matches(info: VersionInfo, labels: dict[str, str] | None) -> bool:
    return all(info.labels.get(k) == v for k, v in (labels or {}).items())


def resolve(spec: ModelDeploymentSpec, obs: Observations) -> Desired:
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
    if not ready:
        return Desired(None, waiting=f"no Ready ModelVersion of model {spec.model} yet")
    newest = max(ready, key=lambda v: (v.created_at or _EPOCH, v.name))
    return Desired(newest.name)
