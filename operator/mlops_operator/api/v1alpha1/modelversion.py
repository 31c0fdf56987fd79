"""ModelVersion: one registry entry. Its spec is immutable once created — a new model is a new object,
so what a deployment serves, what lineage says and what was trained can never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    CelRule,
    KindInfo,
    KubeObject,
    ModelStage,
    ModelVersionPhase,
    PrinterColumn,
    StatusBase,
    StatusModel,
)
from mlops_operator.api.v1alpha1.primitives import ModelName
from mlops_operator.api.v1alpha1.training import ArtifactRef, Gates, TrainingSpec, gate_metric_rule

IMMUTABLE_MESSAGE = "spec is immutable: create a new ModelVersion"


class ModelVersionSpec(ApiModel):
    """What the version is: trained here (training) or registered from an existing artifact (artifact)."""

    model: ModelName = Field(description="Registry key (also the label mlops.dev/model and the served model name).")
    training: TrainingSpec | None = Field(None, description="Train the model (exactly one of training or artifact).")
    artifact: ArtifactRef | None = Field(
        None, description="Register an existing artifact (exactly one of training or artifact)."
    )
    gates: Gates | None = Field(None, description="Conditions to become Ready; otherwise the version is Rejected.")

    cel_rules = (
        CelRule("has(self.training) != has(self.artifact)", "exactly one of training or artifact must be set",
                lambda s: (s.training is None) != (s.artifact is None)),
        gate_metric_rule(training_optional=True),
        CelRule("self == oldSelf", IMMUTABLE_MESSAGE),
    )


class ArtifactStatus(StatusModel):
    """The verified artifact of this version."""

    uri: str | None = Field(None, max_length=1024, description="s3:// prefix of the artifact directory.")
    sha256: str | None = Field(
        None, max_length=64, description="sha256 of model.joblib (verified against the manifest)."
    )
    size_bytes: int | None = Field(None, ge=0, description="Size of model.joblib in bytes.")
    format: str | None = Field(None, max_length=64, description="Artifact format, e.g. sklearn-joblib.")


class PrimaryMetric(StatusModel):
    """The metric shown in `kubectl get mv`: the first of training.metrics (or of the trainer's defaults)."""

    name: str = Field(description="Metric name, e.g. accuracy.")
    value: float | None = Field(None, description="Its value on the test split.")


class IOField(StatusModel):
    """A named input or output column."""

    name: str = Field(description="Column name.")
    dtype: str = Field(description="Data type, e.g. float64.")


class Signature(StatusModel):
    """The model's inputs and outputs, as checked by the server."""

    inputs: list[IOField] | None = Field(None, max_length=1024, description="Input columns in order.")
    outputs: list[IOField] | None = Field(None, max_length=64, description="Output columns.")


class ObjectRef(StatusModel):
    """A reference to another object."""

    kind: str = Field(description="Kind, e.g. RetrainPolicy.")
    name: str = Field(description="Name in the same namespace.")


class LabelsLineage(StatusModel):
    """The point-in-time labels a version trained on, the as-of rule, and what the join kept."""

    source: str | None = Field(None, max_length=1024, description="s3:// URI of the labels.")
    as_of: str | None = Field(None, max_length=256, description="The as-of rule the labels were joined with.")
    max_age: str | None = Field(None, description="The maxAge bound, when set.")
    labels: int | None = Field(None, description="Label rows read.")
    joined: int | None = Field(None, description="Label rows joined with a feature value known at their time.")
    dropped: dict[str, int] | None = Field(
        None, max_length=8, description="Label rows dropped, by cause: invalid, noFeatureValue, tooOld.")


class Lineage(StatusModel):
    """Where this version came from."""

    feature_set: str | None = Field(None, description="FeatureSet trained on.")
    feature_set_version: str | None = Field(None, description="Snapshot version trained on (resolved).")
    dataset: str | None = Field(None, max_length=1024, description="Builtin dataset name or s3:// URI trained on.")
    dataset_sha256: str | None = Field(None, max_length=64, description="sha256 of the training data.")
    labels: LabelsLineage | None = Field(
        None, description="With training.featureSet.labels: the labels, the as-of rule and the join's counts.")
    image: str | None = Field(None, description="Image of the training Job.")
    trained_by: ObjectRef | None = Field(
        None, description="The RetrainPolicy or HyperparameterSearch that created this version."
    )
    job: str | None = Field(None, description="Name of the training Job.")
    started_at: datetime | None = Field(None, description="When training started.")
    finished_at: datetime | None = Field(None, description="When training finished.")


class GateResult(StatusModel):
    """The verdict of one gate."""

    gate: str = Field(description="minMetrics, maxMetrics or mustBeatStable.")
    metric: str = Field(description="Metric compared.")
    value: float | None = Field(None, description="This version's value.")
    threshold: float | None = Field(
        None, description="The bar it was compared with (mustBeatStable: the stable version's score moved by the margin)."
    )
    passed: bool = Field(description="Whether the gate passed.")
    baseline: float | None = Field(None, description="mustBeatStable: the stable version's score it was compared with.")
    baseline_version: str | None = Field(
        None, max_length=253, description="mustBeatStable: the stable version compared with (a ModelVersion name)."
    )
    margin: float | None = Field(None, description="mustBeatStable: how much better than stable the version had to be.")
    comparison: Literal["sameRows", "recorded"] | None = Field(
        None, description="mustBeatStable: sameRows = the training Job scored the stable version on this version's "
                          "test rows; recorded = the stable version's own metric from its training, on other rows "
                          "(a report without a same-rows score: trained before, or registered).",
    )
    rows: int | None = Field(None, ge=0, description="mustBeatStable, sameRows: the test rows both versions were scored on.")
    message: str | None = Field(
        None, max_length=1024,
        description="mustBeatStable: why the stable version could not be scored, or why the comparison is recorded.",
    )


class CompiledStatus(StatusModel):
    """Whether the training Job compiled the model, and how closely the compiled form answers like it."""

    available: bool = Field(
        description="True when model.onnx is committed with the version and matched the model on its test rows; "
                    "servers then run it (ModelDeployment serving.compiledModel: auto)."
    )
    format: str | None = Field(None, max_length=32, description="Compiled format, e.g. onnx.")
    reason: str | None = Field(
        None, max_length=1024, description="Why the version is not compiled (it is served by scikit-learn)."
    )
    max_difference: float | None = Field(
        None, ge=0, description="Largest difference between compiled and scikit-learn answers on the test rows "
                                "(class probabilities for a classifier, values for a regressor)."
    )
    tolerance: float | None = Field(
        None, ge=0, description="The bound maxDifference had to stay within (classes must be identical)."
    )
    input_type: str | None = Field(None, max_length=16, description="Precision of the compiled inputs: double or float.")
    rows: int | None = Field(None, ge=0, description="Test rows the compiled form was checked on.")
    conversion_seconds: float | None = Field(None, ge=0, description="Time the conversion and its check took.")


class ModelVersionStatus(StatusBase):
    """Observed state of a ModelVersion."""

    phase: ModelVersionPhase | None = Field(
        None, description="Pending, Training, Validating, Ready, Rejected or Failed."
    )
    artifact: ArtifactStatus | None = Field(None, description="The verified artifact.")
    metrics: dict[str, float] | None = Field(None, max_length=32, description="Metrics on the test split.")
    primary_metric: PrimaryMetric | None = Field(None, description="The metric shown first.")
    parameters: dict[str, Any] | None = Field(None, description="Effective hyperparameters of the estimator.")
    signature: Signature | None = Field(None, description="Inputs and outputs of the model.")
    lineage: Lineage | None = Field(None, description="Data, code and job this version came from.")
    compiled: CompiledStatus | None = Field(
        None, description="The compiled (ONNX) form of the model: available, or the reason it is not."
    )
    gate_results: list[GateResult] | None = Field(None, max_length=64, description="Verdict of every gate.")
    stage: ModelStage | None = Field(
        None, description="None, Staging, Production or Archived (derived from deployments)."
    )


class ModelVersion(KubeObject):
    """A registered model version: artifact, metrics, lineage and gate verdicts."""

    kind: Literal["ModelVersion"] = Field("ModelVersion", description="ModelVersion.")
    spec: ModelVersionSpec = Field(description="Immutable definition of the version.")
    status: ModelVersionStatus = Field(default_factory=ModelVersionStatus, description="Observed state.")


KIND_INFO = KindInfo(
    kind="ModelVersion",
    plural="modelversions",
    singular="modelversion",
    short_names=("mv",),
    model=ModelVersion,
    spec_model=ModelVersionSpec,
    status_model=ModelVersionStatus,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.model", "Registry key."),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Training, Validating, Ready, Rejected or Failed."),
        PrinterColumn("Metric", "string", ".status.primaryMetric.name", "Primary metric."),
        PrinterColumn("Value", "number", ".status.primaryMetric.value", "Primary metric on the test split."),
        PrinterColumn("Stage", "string", ".status.stage", "None, Staging, Production or Archived."),
        PrinterColumn("Estimator", "string", ".spec.training.estimator", "Estimator trained.", 1),
        PrinterColumn("Compiled", "boolean", ".status.compiled.available",
                      "Served from its ONNX form (status.compiled.reason says why not).", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
