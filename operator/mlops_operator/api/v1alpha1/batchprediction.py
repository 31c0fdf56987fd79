"""BatchPrediction: the offline form of a deployment — a ModelVersion scores a dataset or a FeatureSet snapshot in a Job.

Each run writes ``predictions/<namespace>/<name>/<run>/`` (Parquet parts, ``run.json`` and the manifest
that commits them). A run id is deterministic: the schedule slot it answers, the value of the
``mlops.dev/run`` annotation, or the spec generation when there is no schedule. A committed run is never
written again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    BatchPredictionPhase,
    CelRule,
    KindInfo,
    KubeObject,
    PrinterColumn,
    StatusBase,
    StatusModel,
)
from mlops_operator.api.v1alpha1.primitives import (
    ColumnName,
    Cron,
    Duration,
    FileFormat,
    ObjectName,
    ResourceRequirements,
    S3Uri,
)
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.api.v1alpha1.training import FeatureSetRef

MAX_PASSTHROUGH = 32
MAX_CHUNK_ROWS = 1_000_000


class BatchInput(ApiModel):
    """What is scored: an s3:// Parquet/CSV file, or a FeatureSet snapshot (exactly one)."""

    uri: S3Uri | None = Field(None, description="s3:// URI of a parquet or csv file with the model's input columns.")
    format: FileFormat | None = Field(
        None, description="File format of uri: parquet or csv; from the file extension when absent."
    )
    feature_set: FeatureSetRef | None = Field(
        None, description='A FeatureSet snapshot in the same namespace ({name, version}; version "" = the latest).'
    )

    cel_rules = (
        CelRule("has(self.uri) != has(self.featureSet)", "input: exactly one of uri or featureSet must be set",
                lambda s: (s.uri is None) != (s.feature_set is None)),
        CelRule("!has(self.format) || has(self.uri)", "input.format applies only with input.uri",
                lambda s: s.format is None or s.uri is not None, field_path=".format"),
    )


class BatchPredictionSpec(ApiModel):
    """Desired batch scoring."""

    model_version: ObjectName = Field(description="Name of a Ready ModelVersion in the same namespace.")
    input: BatchInput = Field(description="The rows to score: {uri, format} or {featureSet: {name, version}}.")
    passthrough: list[ColumnName] | None = Field(
        None, max_length=MAX_PASSTHROUGH,
        description="Input columns copied next to each prediction (e.g. an id); a FeatureSet's entityKey when absent.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    chunk_rows: int = Field(
        10_000, ge=1, le=MAX_CHUNK_ROWS,
        description="Rows scored at a time (one Parquet part each): the Job's memory does not grow with the input.",
    )
    schedule: Cron | None = Field(
        None, description='Cron schedule of runs, e.g. "0 2 * * *"; without one, the spec runs once (again when '
                          'modelVersion, input, passthrough or chunkRows change).',
    )
    history_limit: int = Field(10, ge=1, le=100, description="Runs kept in status.runs.")
    timeout: Duration | None = Field(None, description="Longest a run may take, e.g. 30m (the operator's default when absent).")
    resources: ResourceRequirements | None = Field(None, description="CPU/memory of the scoring container.")
    pod: PodOverrides | None = Field(
        None, description="Service account, pull secrets, placement and security overrides of the scoring pod.")

    cel_rules = (
        CelRule("!has(self.passthrough) || !self.passthrough.exists(c, c == 'prediction')",
                "passthrough must not name the column 'prediction' (the output column)",
                lambda s: "prediction" not in (s.passthrough or []), field_path=".passthrough"),
    )


class Progress(StatusModel):
    """How far the running Job is (parts written so far)."""

    run: str | None = Field(None, description="The run being scored.")
    chunks_written: int | None = Field(None, ge=0, description="Parquet parts written so far.")
    rows_at_most: int | None = Field(None, ge=0, description="Upper bound of rows scored so far (parts x chunkRows).")


class RunRecord(StatusModel):
    """One run, newest last."""

    run: str = Field(description="Run id: t-<slot> (schedule), r-<annotation value> (request) or g<generation>.")
    trigger: str | None = Field(None, max_length=64, description="Schedule, Request or SpecChanged.")
    result: str | None = Field(None, max_length=64, description="Succeeded or Failed.")
    reason: str | None = Field(None, max_length=128, description="Why it failed (with result Failed).")
    message: str | None = Field(None, max_length=1024, description="What happened.")
    output_uri: str | None = Field(None, max_length=1024, description="s3:// prefix of the run's committed output.")
    rows: int | None = Field(None, ge=0, description="Rows scored.")
    files: int | None = Field(None, ge=0, description="Parquet parts written.")
    model_version: str | None = Field(None, max_length=253, description="The ModelVersion that scored.")
    input: str | None = Field(None, max_length=1024, description="What was scored (URI or featureset:<name>/<version>).")
    started_at: datetime | None = Field(None, description="When the run was started.")
    finished_at: datetime | None = Field(None, description="When its outcome was recorded.")


class BatchPredictionStatus(StatusBase):
    """Observed state of a BatchPrediction."""

    phase: BatchPredictionPhase | None = Field(
        None, description="Pending, Running, Succeeded or Failed (of the last run)."
    )
    active_run: str | None = Field(None, description="Run being scored by a Job, if any.")
    active_job: str | None = Field(None, description="Name of the running Job.")
    active_trigger: str | None = Field(None, description="Why the running run was started.")
    active_input: str | None = Field(None, max_length=4096, description="What the running run scores (JSON).")
    active_model_uri: str | None = Field(None, max_length=1024, description="Artifact prefix the running run uses.")
    active_model_sha256: str | None = Field(None, max_length=64, description="Registry sha256 of that artifact.")
    active_started_at: datetime | None = Field(None, description="When the running run was started.")
    runs: list[RunRecord] | None = Field(None, max_length=100, description="Recent runs, newest last (historyLimit).")
    last_output_uri: str | None = Field(None, max_length=1024, description="Output of the last successful run.")
    rows_scored: int | None = Field(None, ge=0, description="Rows of the last successful run.")
    progress: Progress | None = Field(None, description="Progress of the running run.")
    handled_request: str | None = Field(
        None, description="Last handled value of the mlops.dev/run annotation (a request acts once)."
    )
    handled_generation: int | None = Field(None, ge=0, description="Generation last run (specs without a schedule).")
    handled_spec_hash: str | None = Field(
        None, max_length=64, description="Hash of the output-shaping spec fields last run (specs without a schedule).",
    )
    last_scheduled_at: datetime | None = Field(None, description="Schedule slot of the last scheduled run.")
    next_scheduled_at: datetime | None = Field(None, description="Next schedule slot.")


class BatchPrediction(KubeObject):
    """Scores a dataset or a FeatureSet snapshot with a ModelVersion, chunk by chunk, into S3."""

    kind: Literal["BatchPrediction"] = Field("BatchPrediction", description="BatchPrediction.")
    spec: BatchPredictionSpec = Field(description="Desired batch scoring.")
    status: BatchPredictionStatus = Field(default_factory=BatchPredictionStatus, description="Observed state.")


KIND_INFO = KindInfo(
    kind="BatchPrediction",
    plural="batchpredictions",
    singular="batchprediction",
    short_names=("bp",),
    model=BatchPrediction,
    spec_model=BatchPredictionSpec,
    status_model=BatchPredictionStatus,
    printer_columns=(
        PrinterColumn("Model-Version", "string", ".spec.modelVersion", "The ModelVersion that scores."),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Running, Succeeded or Failed."),
        PrinterColumn("Rows", "integer", ".status.rowsScored", "Rows of the last successful run."),
        PrinterColumn("Output", "string", ".status.lastOutputUri", "Output of the last successful run.", 1),
        PrinterColumn("Schedule", "string", ".spec.schedule", "Cron schedule of runs.", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
