"""HyperparameterSearch: trials are ModelVersions (so every trial is a Job with its own metrics and lineage);
the best one by the objective can be registered as the model's new version.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    CelRule,
    HyperparameterSearchPhase,
    KindInfo,
    KubeObject,
    PrinterColumn,
    StatusBase,
    StatusModel,
    TrialState,
    schema_extra,
)
from mlops_operator.api.v1alpha1.primitives import AnyValue, ModelName
from mlops_operator.api.v1alpha1.training import Metric, ModelVersionTemplate

MAX_TRIALS = 200
MAX_SPACE = 32
PARAM_NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
ParamName = Annotated[str, Field(pattern=PARAM_NAME_PATTERN, max_length=64)]


class ParamType(StrEnum):
    INT = "int"
    FLOAT = "float"


class Scale(StrEnum):
    LINEAR = "linear"
    LOG = "log"


class Algorithm(StrEnum):
    GRID = "grid"
    RANDOM = "random"
    BAYESIAN = "bayesian"


class Goal(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class EarlyStoppingType(StrEnum):
    NONE = "none"
    MEDIAN = "median"


def _has(obj: Any, name: str) -> bool:
    return getattr(obj, name) is not None


VALUES_OR_RANGE = "exactly one of values or min/max must be set"


def _range_schema_extra(schema: dict[str, Any], cls: type) -> None:
    schema_extra(schema, cls)
    schema["minProperties"] = 1
    schema["not"] = {"required": ["values", "min"]}


def _one_kind_of_range(p: Any) -> bool:
    return _has(p, "values") != (_has(p, "min") or _has(p, "max"))


class ParamRange(ApiModel):
    """The values one hyperparameter may take: a list of values, or a range [min, max]."""

    # `values` holds any JSON values (numbers, strings, booleans, null), so its schema has no type and CEL
    # cannot see it: "values or min/max, not both, not neither" is enforced by the schema itself
    # (minProperties, `not: {required: [values, min]}`) together with the min/max rules below.
    model_config = ConfigDict(json_schema_extra=_range_schema_extra)

    values: list[AnyValue] | None = Field(None, min_length=1, max_length=64, description="Candidate values.")
    min: float | None = Field(None, description="Lower end of the range (with max).")
    max: float | None = Field(None, description="Upper end of the range (with min).")
    type: ParamType | None = Field(None, description="int or float (default) for a range.")
    scale: Scale | None = Field(None, description="linear (default) or log sampling for a range.")

    cel_rules = (
        CelRule("has(self.min) == has(self.max)", "min and max must be set together",
                lambda p: _has(p, "min") == _has(p, "max"), field_path=".max"),
        CelRule("!has(self.min) || !has(self.max) || self.min < self.max", "min must be less than max",
                lambda p: p.min is None or p.max is None or p.min < p.max, field_path=".min"),
        CelRule("!has(self.scale) || self.scale != 'log' || (has(self.min) && self.min > 0.0)",
                "scale log needs min > 0", lambda p: p.scale != "log" or (p.min is not None and p.min > 0),
                field_path=".scale"),
        CelRule("(!has(self.type) && !has(self.scale)) || has(self.min)",
                "type and scale apply only to min/max ranges",
                lambda p: (p.type is None and p.scale is None) or p.min is not None),
        CelRule(None, VALUES_OR_RANGE, _one_kind_of_range),  # the schema's minProperties + not, in Python
    )


class Objective(ApiModel):
    """What the search optimizes."""

    metric: Metric = Field(description="Metric of each trial, e.g. roc_auc.")
    goal: Goal = Field(Goal.MAXIMIZE, description="maximize (default) or minimize.")


class EarlyStopping(ApiModel):
    """Stop unpromising trials."""

    type: EarlyStoppingType = Field(EarlyStoppingType.MEDIAN, description="none or median (default).")
    min_trials: int = Field(3, ge=1, le=MAX_TRIALS, description="Finished trials needed before stopping any.")


class HyperparameterSearchSpec(ApiModel):
    """Desired search."""

    model: ModelName = Field(description="Model searched (spec.model of the trial ModelVersions).")
    template: ModelVersionTemplate = Field(
        description="Training and gates of each trial; space values override hyperparameters."
    )
    space: dict[ParamName, ParamRange] = Field(
        min_length=1, max_length=MAX_SPACE, description="Hyperparameter name to its values or range."
    )
    algorithm: Algorithm = Field(Algorithm.RANDOM, description="grid, random (default) or bayesian.")
    objective: Objective = Field(description="Metric and direction to optimize.")
    max_trials: int = Field(20, ge=1, le=MAX_TRIALS, description="Trials at most (a grid stops when exhausted).")
    parallelism: int = Field(2, ge=1, le=20, description="Trials running at once (capped by maxTrials).")
    early_stopping: EarlyStopping | None = Field(None, description="Stop unpromising trials; never when absent.")
    register_best: bool = Field(True, description="Register the best trial as a Ready ModelVersion of the model.")
    retain_best: int | None = Field(
        None, ge=1, le=MAX_TRIALS,
        description="Once the search has ended, delete every trial ModelVersion except the best N Succeeded ones "
                    'and the registered one, with their artifacts (they get mlops.dev/delete-artifacts: "true" '
                    "first); a trial a ModelDeployment may serve is kept. Absent: every trial is kept.",
    )

    cel_rules = (
        CelRule("!has(self.algorithm) || self.algorithm != 'grid' || self.space.all(k, !has(self.space[k].min))",
                "algorithm grid needs values, not min/max, in every space entry",
                lambda s: s.algorithm != "grid" or all(r.values is not None for r in s.space.values()),
                field_path=".space"),
        CelRule("!has(self.template.training.metrics) || self.objective.metric in self.template.training.metrics",
                "objective.metric must be listed in template.training.metrics",
                lambda s: not s.template.training.metrics or s.objective.metric in s.template.training.metrics,
                field_path=".objective.metric"),
    )


class Trial(StatusModel):
    """One trial (a ModelVersion)."""

    name: str = Field(description="ModelVersion of the trial.")
    parameters: dict[str, Any] | None = Field(None, description="Hyperparameters sampled for the trial.")
    value: float | None = Field(None, description="Objective value, when finished.")
    state: TrialState = Field(description="Pending, Running, Succeeded, Failed or Pruned.")
    message: str | None = Field(None, max_length=1024, description="Why it failed or was pruned.")


class BestTrial(StatusModel):
    """The best trial so far."""

    trial: str = Field(description="Name of the trial's ModelVersion.")
    parameters: dict[str, Any] | None = Field(None, description="Its hyperparameters.")
    value: float | None = Field(None, description="Its objective value.")


class HyperparameterSearchStatus(StatusBase):
    """Observed state of a HyperparameterSearch."""

    phase: HyperparameterSearchPhase | None = Field(None, description="Pending, Running, Succeeded or Failed.")
    trials: list[Trial] | None = Field(None, max_length=MAX_TRIALS, description="Every trial, in creation order.")
    completed_trials: int | None = Field(None, ge=0, description="Trials finished (any outcome).")
    best: BestTrial | None = Field(None, description="The best trial so far.")
    registered_version: str | None = Field(None, description="ModelVersion registered from the best trial.")


class HyperparameterSearch(KubeObject):
    """Searches hyperparameters with trial ModelVersions and registers the best."""

    kind: Literal["HyperparameterSearch"] = Field("HyperparameterSearch", description="HyperparameterSearch.")
    spec: HyperparameterSearchSpec = Field(description="Desired search.")
    status: HyperparameterSearchStatus = Field(
        default_factory=HyperparameterSearchStatus, description="Observed state."
    )


KIND_INFO = KindInfo(
    kind="HyperparameterSearch",
    plural="hyperparametersearches",
    singular="hyperparametersearch",
    short_names=("hps",),
    model=HyperparameterSearch,
    spec_model=HyperparameterSearchSpec,
    status_model=HyperparameterSearchStatus,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.model", "Model searched."),
        PrinterColumn("Algorithm", "string", ".spec.algorithm", "grid, random or bayesian."),
        PrinterColumn("Trials", "integer", ".status.completedTrials", "Trials finished."),
        PrinterColumn("Best", "number", ".status.best.value", "Best objective value so far."),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Running, Succeeded or Failed."),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
