"""What every kind shares: the base models, CEL rules, conditions, phases and the kind registry types.

The CRDs are generated from these models (``mlops_operator.api.crdgen``), so a rule lives here once:
constraints in the types, cross-field rules as ``CelRule`` (emitted as ``x-kubernetes-validations`` and
also checked when the operator parses an object, so a template inside a RetrainPolicy is held to the
same rules as a ModelVersion the apiserver admitted).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "mlops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORIES = ("mlops",)

MAX_CONDITIONS = 32


# ------------------------------------------------------------------------------------------- CEL rules


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule: CEL for the apiserver, ``check`` for the operator's own parsing.

    ``check`` receives the validated model and returns True when the object is valid; it is the Python
    reading of ``rule`` and unit tests hold both to the same positive and negative cases. Transition rules
    (those using ``oldSelf``) have no ``check``: only the apiserver sees the old object. A rule with
    ``rule=None`` is checked in Python only: the apiserver enforces it another way (see the model's
    schema extras), because CEL cannot see typeless (free-form) fields.
    """

    rule: str | None
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None
    reason: str | None = None

    def to_schema(self) -> dict[str, str]:
        assert self.rule is not None, "a Python-only rule has no schema form"
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def cel_validations(*rules: CelRule) -> dict[str, list[dict[str, str]]]:
    """``json_schema_extra`` for a field that carries its own CEL rules (no Python twin needed)."""
    return {"x-kubernetes-validations": [r.to_schema() for r in rules]}


def distinct_columns(*attrs: str) -> Callable[[Any], bool]:
    """The Python twin of a "must name different columns" rule: the set ones of ``attrs`` differ."""
    def check(spec: Any) -> bool:
        columns = [c for c in (getattr(spec, a) for a in attrs) if c is not None]
        return len(columns) == len(set(columns))
    return check


def strictly_increasing(field: str, max_items: int, key: str | None = None, attr: str | None = None) -> CelRule:
    """``self.<field>`` (a list of at most ``max_items``) is strictly increasing, by ``key`` when given.

    Core CEL has no indexed comprehension, so neighbours are compared clause by clause; the clauses are
    bounded by the list's maxItems, which also keeps the apiserver's cost estimate small.
    """
    def item(i: int) -> str:
        return f"self.{field}[{i}]" + (f".{key}" if key else "")

    clauses = [f"(size(self.{field}) <= {i + 1} || {item(i)} < {item(i + 1)})" for i in range(max_items - 1)]
    rule = f"!has(self.{field}) || (" + " && ".join(clauses) + ")"
    what = f"{field}[].{key}" if key else field

    def check(obj: Any) -> bool:
        items = getattr(obj, attr or field) or []
        values = [getattr(x, key) for x in items] if key else list(items)
        return all(a < b for a, b in zip(values, values[1:]))

    return CelRule(rule, f"{what} must be strictly increasing", check, field_path=f".{field}")


def schema_extra(schema: dict[str, Any], cls: type) -> None:
    """``json_schema_extra`` of every ApiModel: its ``cel_rules`` as x-kubernetes-validations."""
    rules = [r.to_schema() for r in getattr(cls, "cel_rules", ()) if r.rule is not None]
    if rules:
        schema["x-kubernetes-validations"] = rules


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, snake_case in Python, unknown fields refused.

    ``cel_rules`` on a subclass become that object's ``x-kubernetes-validations`` and are checked on
    validation too (ValueError with the rule's message, which names the field).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_enum_values=True,
        json_schema_extra=schema_extra,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Any:
        failed = [r.message for r in type(self).cel_rules if r.check is not None and not r.check(self)]
        if failed:
            raise ValueError("; ".join(failed))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase, JSON types, unset optionals left out) — what goes into a manifest."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Base of status models: tolerant of fields it does not know (another operator version wrote them)."""

    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------------------------------ conditions


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One observation about the object, in the shape of metav1.Condition."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready, Progressing, Degraded.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field("", description="One-word CamelCase reason for the last transition.", max_length=1024)
    message: str = Field("", description="Human-readable detail of the last transition.", max_length=32768)
    last_transition_time: datetime | None = Field(
        None, description="When status last changed (not when the condition was last written)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


def format_time(now: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_str(status: str | bool | ConditionStatus) -> str:
    if isinstance(status, bool):
        return "True" if status else "False"
    value = str(status)
    if value not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return value


def set_condition(
    conditions: list[dict[str, Any]] | None,
    *,
    type: str,
    status: str | bool,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return a new condition list with ``type`` set; the input is not modified.

    ``lastTransitionTime`` moves to ``now`` only when the status changes, so "since when is it not Ready?"
    stays answerable and rewriting the same verdict every pass produces an identical list (and no write).
    A new condition type is appended; an existing one keeps its position.
    """
    new_status = _status_str(status)
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions or ():
        if cond.get("type") != type:
            result.append(copy.deepcopy(dict(cond)))
            continue
        found = True
        unchanged = cond.get("status") == new_status and cond.get("lastTransitionTime")
        result.append(_condition(type, new_status, reason, message, observed_generation,
                                 cond["lastTransitionTime"] if unchanged else format_time(now)))
    if not found:
        result.append(_condition(type, new_status, reason, message, observed_generation, format_time(now)))
    return result


def _condition(type_: str, status: str, reason: str, message: str, generation: int | None, at: str) -> dict:
    cond = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def get_condition(conditions: list[Mapping[str, Any]] | None, type: str) -> dict[str, Any] | None:
    """The condition of ``type`` (a copy), or None."""
    for cond in conditions or ():
        if cond.get("type") == type:
            return dict(cond)
    return None


def is_condition_true(conditions: list[Mapping[str, Any]] | None, type: str) -> bool:
    cond = get_condition(conditions, type)
    return cond is not None and cond.get("status") == "True"


# ---------------------------------------------------------------------------------------------- phases


class FeatureSetPhase(StrEnum):
    PENDING = "Pending"  # accepted, nothing materialized yet
    MATERIALIZING = "Materializing"  # a materialize Job is running
    READY = "Ready"  # at least one snapshot passed the quality policy
    FAILED = "Failed"  # the last materialization failed and no snapshot is usable


class ModelVersionPhase(StrEnum):
    PENDING = "Pending"  # accepted, waiting for inputs (e.g. a FeatureSet snapshot)
    TRAINING = "Training"  # the training Job runs
    VALIDATING = "Validating"  # artifact written; sha256 and gates being checked
    READY = "Ready"  # passed the gates: may be deployed
    REJECTED = "Rejected"  # trained fine but failed a gate: never deployed
    FAILED = "Failed"  # training or registration failed (see conditions)


class ModelStage(StrEnum):
    """Derived from the ModelDeployments that use a version; never typed by hand."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class ModelDeploymentPhase(StrEnum):
    PENDING = "Pending"  # waiting for a Ready version
    PROGRESSING = "Progressing"  # a rollout is under way
    PAUSED = "Paused"  # spec.paused or a strategy pause awaiting promotion
    SUCCEEDED = "Succeeded"  # the desired version serves all traffic and the entry point answers
    DEGRADED = "Degraded"  # serving, but not healthy (e.g. pods not ready)
    ROLLED_BACK = "RolledBack"  # the candidate failed analysis; stable serves all traffic
    FAILED = "Failed"  # nothing can be served (e.g. no usable version)


class RetrainPolicyPhase(StrEnum):
    IDLE = "Idle"  # waiting for a trigger
    RETRAINING = "Retraining"  # at least one ModelVersion it created is training
    COOLING_DOWN = "CoolingDown"  # triggered recently; new triggers are recorded, not acted on
    SUSPENDED = "Suspended"  # spec.suspend is true
    FAILED = "Failed"  # the policy cannot act (see conditions)


class HyperparameterSearchPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"  # every trial finished (or stopped early); best chosen
    FAILED = "Failed"


class BatchPredictionPhase(StrEnum):
    PENDING = "Pending"  # waiting for a trigger or for its references (see InvalidSpec)
    RUNNING = "Running"  # a scoring Job runs
    SUCCEEDED = "Succeeded"  # the last run committed its output
    FAILED = "Failed"  # the last run failed (see the Ready condition)


class TrialState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PRUNED = "Pruned"  # stopped early by the earlyStopping rule


# ----------------------------------------------------------------------------------------- kind bases


def _conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="Latest observations of the object's state (Ready, Progressing, ...), one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class StatusBase(StatusModel):
    """Fields every status has; each kind adds a typed ``phase`` and its own fields."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the status was last computed from."
    )
    conditions: list[Condition] = _conditions_field()


def plain(obj: Any) -> Any:
    """A deep copy of ``obj`` with every Mapping turned into a dict (kopf bodies are read-only views)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


class KubeObject(ApiModel):
    """Base of the top-level models: ``<Kind>.from_body(body)`` gives a typed object to a handler."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(API_VERSION, description="mlops.dev/v1alpha1.")
    kind: str = Field(description="The kind of the object.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Any:
        return cls.model_validate(plain(body))


@dataclass(frozen=True)
class PrinterColumn:
    """One ``kubectl get`` column (additionalPrinterColumns)."""

    name: str
    type: str  # string | integer | number | boolean | date
    json_path: str
    description: str
    priority: int = 0  # 1 = shown only with -o wide

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path,
                               "description": self.description}
        if self.priority:
            out["priority"] = self.priority
        return out


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")
READY_COLUMN = PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status',
                             "The Ready condition: True, False or Unknown.")
REASON_COLUMN = PrinterColumn("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason',
                              "Why the object is (not) Ready, in one word.")


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD generator and the operator need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[KubeObject]
    spec_model: type[ApiModel]
    status_model: type[StatusBase]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = field(default=CATEGORIES)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def phases(self) -> tuple[str, ...]:
        """Every value ``status.phase`` may take, in the order its enum declares them."""
        annotation = self.status_model.model_fields["phase"].annotation
        enum = next(a for a in get_args(annotation) if a is not type(None))
        return tuple(p.value for p in enum)
