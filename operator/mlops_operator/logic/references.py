"""Cross-object references: which objects a spec names, and what is wrong when they are missing.

A reference the apiserver cannot check (another object may be created later, or deleted) is a runtime
fact, so it becomes the ``InvalidSpec`` condition with a reason that names what is missing, plus an
event. Handlers re-check on every tick, so the condition clears by itself when the object appears:
level-triggered, no re-apply needed. Pure: targets are passed in as the dicts the API returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from mlops_operator.api.v1alpha1.common import get_condition, set_condition
from mlops_operator.api.v1alpha1.training import Gates, TrainingSpec
from mlops_operator.logic.status import Event

INVALID_SPEC = "InvalidSpec"
PLURALS = {"FeatureSet": "featuresets", "ModelVersion": "modelversions", "ModelDeployment": "modeldeployments"}


@dataclass(frozen=True)
class Reference:
    """``field`` of the spec names the ``kind`` object ``name`` in the same namespace."""

    kind: str
    name: str
    field: str
    version: str = ""          # FeatureSet snapshot ("" = latest Ready)
    model: str | None = None   # a referenced ModelVersion must belong to this model
    history: bool = False      # a FeatureSet must keep each entity's history (point-in-time labels)

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def training_references(training: TrainingSpec | None, gates: Gates | None, prefix: str = "spec") -> list[Reference]:
    """References inside a training block and its gates (ModelVersion spec, or a template)."""
    refs: list[Reference] = []
    if training is not None and training.feature_set is not None:
        fs = training.feature_set
        refs.append(Reference("FeatureSet", fs.name, f"{prefix}.training.featureSet.name", version=fs.version,
                              history=fs.labels is not None))
    if gates is not None and gates.must_beat_stable is not None:
        refs.append(Reference("ModelDeployment", gates.must_beat_stable.model_deployment,
                              f"{prefix}.gates.mustBeatStable.modelDeployment"))
    return refs


def snapshot(feature_set: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    """The FeatureSet snapshot ``version`` ("" = the latest Ready one) from its status, or None."""
    status = feature_set.get("status") or {}
    wanted = version or status.get("latestVersion")
    if not wanted:
        return None
    return next((v for v in status.get("versions") or [] if v.get("version") == wanted), None)


def check_reference(ref: Reference, target: Mapping[str, Any] | None, namespace: str) -> Problem | None:
    """What is wrong with one reference, given the object it names (None = not found)."""
    if target is None:
        return Problem(f"{ref.kind}NotFound",
                       f"{ref.field}: {ref.kind} {ref.name!r} not found in namespace {namespace!r}")
    if ref.kind == "FeatureSet" and ref.version and snapshot(target, ref.version) is None:
        return Problem("FeatureSetVersionNotFound",
                       f"{ref.field}: FeatureSet {ref.name!r} has no snapshot {ref.version!r}")
    spec = target.get("spec") or {}
    if ref.history:
        missing = [f for f in ("entityKey", "timestampColumn") if not spec.get(f)]
        if missing:
            return Problem("FeatureSetWithoutHistory",
                           f"{ref.field.removesuffix('.name')}.labels: FeatureSet {ref.name!r} has no "
                           f"{' and no '.join(missing)}; point-in-time labels are joined with each entity's "
                           "feature history by event time")
    target_model = spec.get("model")
    if ref.model is not None and target_model != ref.model:
        return Problem("ModelMismatch", f"{ref.field}: {ref.kind} {ref.name!r} belongs to model "
                                        f"{target_model!r}, not {ref.model!r}")
    return None


def check_references(refs: Iterable[Reference], targets: Mapping[Reference, Mapping[str, Any] | None],
                     namespace: str) -> list[Problem]:
    problems = (check_reference(ref, targets.get(ref), namespace) for ref in refs)
    return [p for p in problems if p is not None]


def apply_invalid_spec(conditions: list[dict[str, Any]] | None, problems: list[Problem], *,
                       generation: int | None, now: datetime) -> tuple[list[dict[str, Any]], list[Event]]:
    """Set ``InvalidSpec`` from ``problems``; return the conditions and the events the change deserves.

    Events: a Warning when a problem appears or changes, a Normal
    ``ReferencesResolved`` when the last one clears. An unchanged verdict yields no event.
    """
    before = get_condition(conditions, INVALID_SPEC) or {}
    if problems:
        reason, message = problems[0].reason, "; ".join(p.message for p in problems)
        status = "True"
    else:
        reason, message, status = "Valid", "every referenced object exists", "False"
    updated = set_condition(conditions, type=INVALID_SPEC, status=status, reason=reason, message=message,
                            observed_generation=generation, now=now)
    events: list[Event] = []
    if status == "True" and (before.get("status") != "True" or before.get("message") != message):
        events.append(Event("Warning", reason, message))
    elif status == "False" and before.get("status") == "True":
        events.append(Event("Normal", "ReferencesResolved", message))
    return updated, events
