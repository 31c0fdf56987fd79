"""FeatureSet: which columns of a source become features, how they are transformed, imputed and checked.

Transforms and imputations are fitted once per snapshot and stored with it, so training and serving apply
the same fitted transform. The rules below reject combinations that could only fail at materialize time
(a numeric transform on a category, a constant imputation without a value, ...).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    CelRule,
    FeatureSetPhase,
    KindInfo,
    KubeObject,
    PrinterColumn,
    StatusBase,
    StatusModel,
    distinct_columns,
    strictly_increasing,
)
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.api.v1alpha1.primitives import AnyValue, ColumnName, Cron, DataSource, Duration

MAX_FEATURES = 512
MAX_BOUNDARIES = 32
NUMERIC_TRANSFORMS = ("standardize", "minmax", "log1p", "bucketize")
NUMERIC_IMPUTATIONS = ("mean", "median", "knn")
ROW_KEY = "__row__"  # a snapshot's entity key column when spec.entityKey is absent (the row number)


class FeatureDType(StrEnum):
    FLOAT = "float"
    INT = "int"
    CATEGORY = "category"
    BOOL = "bool"


class Transform(StrEnum):
    NONE = "none"
    STANDARDIZE = "standardize"
    MINMAX = "minmax"
    LOG1P = "log1p"
    ONEHOT = "onehot"
    BUCKETIZE = "bucketize"


class ImputeStrategy(StrEnum):
    NONE = "none"
    MEAN = "mean"
    MEDIAN = "median"
    MOST_FREQUENT = "most_frequent"
    CONSTANT = "constant"
    MISSING_CATEGORY = "missing_category"
    KNN = "knn"


class ViolationAction(StrEnum):
    FAIL = "fail"  # the snapshot is not published; the FeatureSet reports the violation
    WARN = "warn"  # published, with a QualityWarning condition
    IMPUTE = "impute"  # violating values are treated as missing and imputed


class Impute(ApiModel):
    """How missing values of a feature are filled (fitted on the snapshot)."""

    strategy: ImputeStrategy = Field(
        description="none, mean, median, most_frequent, constant, missing_category or knn."
    )
    value: str | None = Field(
        None, max_length=256,
        description='Fill value for strategy constant, as text converted to the dtype ("0", "1.5", "unknown").',
    )

    cel_rules = (
        CelRule("has(self.value) == (self.strategy == 'constant')",
                "value is required with strategy constant and not allowed otherwise",
                lambda s: (s.value is not None) == (s.strategy == "constant"), field_path=".value"),
    )


class Checks(ApiModel):
    """Data quality checks of one feature, evaluated on every snapshot."""

    min: float | None = Field(None, description="Smallest allowed value.")
    max: float | None = Field(None, description="Largest allowed value.")
    allowed_values: list[AnyValue] | None = Field(None, max_length=256, description="The only values allowed.")
    max_missing_fraction: float | None = Field(
        None, ge=0.0, le=1.0, description="Largest fraction of missing values (0..1)."
    )

    cel_rules = (
        CelRule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not be greater than max",
                lambda s: s.min is None or s.max is None or s.min <= s.max, field_path=".min"),
    )


def _numeric(f: Any) -> bool:
    return f.dtype in ("float", "int")


class FeatureSpec(ApiModel):
    """One feature column."""

    name: ColumnName = Field(description="Column name in the source.")
    dtype: FeatureDType = Field(FeatureDType.FLOAT, description="float (default), int, category or bool.")
    transform: Transform = Field(
        Transform.NONE, description="none (default), standardize, minmax, log1p, onehot or bucketize."
    )
    boundaries: list[float] | None = Field(
        None, min_length=1, max_length=MAX_BOUNDARIES, description="Bucket edges (strictly increasing) for bucketize."
    )
    impute: Impute | None = Field(None, description="How missing values are filled; none when absent.")
    checks: Checks | None = Field(None, description="Quality checks of this column.")

    cel_rules = (
        CelRule("has(self.boundaries) == (has(self.transform) && self.transform == 'bucketize')",
                "boundaries is required with transform bucketize and not allowed otherwise",
                lambda f: (f.boundaries is not None) == (f.transform == "bucketize"), field_path=".boundaries"),
        strictly_increasing("boundaries", MAX_BOUNDARIES),
        CelRule("!has(self.transform) || !(self.transform in " + repr(list(NUMERIC_TRANSFORMS)) + ") || "
                "!has(self.dtype) || self.dtype in ['float', 'int']",
                "transform " + "|".join(NUMERIC_TRANSFORMS) + " needs dtype float or int",
                lambda f: f.transform not in NUMERIC_TRANSFORMS or _numeric(f), field_path=".transform"),
        CelRule("!has(self.transform) || self.transform != 'onehot' || "
                "(has(self.dtype) && self.dtype in ['category', 'bool', 'int'])",
                "transform onehot needs dtype category, bool or int",
                lambda f: f.transform != "onehot" or f.dtype in ("category", "bool", "int"), field_path=".transform"),
        CelRule("!has(self.impute) || !(self.impute.strategy in " + repr(list(NUMERIC_IMPUTATIONS)) + ") || "
                "!has(self.dtype) || self.dtype in ['float', 'int']",
                "impute.strategy " + "|".join(NUMERIC_IMPUTATIONS) + " needs dtype float or int",
                lambda f: f.impute is None or f.impute.strategy not in NUMERIC_IMPUTATIONS or _numeric(f),
                field_path=".impute"),
        CelRule("!has(self.impute) || self.impute.strategy != 'missing_category' || "
                "(has(self.dtype) && self.dtype == 'category')",
                "impute.strategy missing_category needs dtype category",
                lambda f: f.impute is None or f.impute.strategy != "missing_category" or f.dtype == "category",
                field_path=".impute"),
        CelRule("!has(self.dtype) || self.dtype != 'category' || (has(self.transform) && self.transform != 'none')",
                "dtype category needs transform onehot (a model takes numbers)",
                lambda f: f.dtype != "category" or f.transform != "none", field_path=".transform"),
        CelRule("!has(self.checks) || !has(self.dtype) || self.dtype != 'category' || "
                "(!has(self.checks.min) && !has(self.checks.max))",
                "checks.min and checks.max need a numeric dtype; use checks.allowedValues for a category",
                lambda f: f.checks is None or f.dtype != "category" or (f.checks.min is None and f.checks.max is None),
                field_path=".checks"),
    )


class Materialize(ApiModel):
    """When new snapshots are built (besides on every spec change), and how the materialize pod runs."""

    schedule: Cron | None = Field(None, description='Cron schedule, e.g. "*/30 * * * *"; none = on spec changes only.')
    pod: PodOverrides | None = Field(
        None, description="Service account, pull secrets, placement and security overrides of the materialize pod.")


class OnMissing(StrEnum):
    REJECT = "reject"  # the request is refused (4xx) naming the entity
    IMPUTE = "impute"  # every feature of the entity is missing: the model's fitted imputation fills it


class Online(ApiModel):
    """Online (low-latency) serving of the latest feature values: each materialization writes every entity's
    newest values to the online store, and model servers look them up by entity."""

    enabled: bool = Field(False, description="Serve the latest values online.")
    ttl: Duration = Field(
        "24h", description="How long an online value stays valid after its event time, e.g. 24h; an older "
        "value is never served as fresh (onMissing applies).")
    on_missing: OnMissing = Field(
        OnMissing.REJECT, description="What a lookup of an unknown entity or an expired value does: reject "
        "(default; the request is refused naming the entity) or impute (the model's fitted imputation fills "
        "every feature; needs an impute strategy on every listed feature).")


class QualityPolicy(ApiModel):
    """What a failed check does to a snapshot."""

    on_violation: ViolationAction = Field(ViolationAction.FAIL, description="fail (default), warn or impute.")


def _column_not_feature(attr: str, field: str) -> CelRule:
    return CelRule(
        f"!has(self.{field}) || !has(self.features) || self.features.all(f, f.name != self.{field})",
        f"{field} must not also be listed in features",
        lambda s: getattr(s, attr) is None or all(f.name != getattr(s, attr) for f in s.features or []),
        field_path=f".{field}",
    )


class FeatureSetSpec(ApiModel):
    """Desired feature set."""

    source: DataSource = Field(description="Where the rows come from: {uri, format} or {builtin}.")
    entity_key: ColumnName | None = Field(None, description="Column identifying an entity; the row number when absent.")
    timestamp_column: ColumnName | None = Field(
        None, description="Event time column, for point-in-time correct training sets."
    )
    target: ColumnName | None = Field(None, description="Label column carried along for training.")
    features: list[FeatureSpec] | None = Field(
        None, max_length=MAX_FEATURES,
        description="Feature columns; every other column (as float, no transform) when absent.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    materialize: Materialize | None = Field(None, description="Schedule of re-materialization.")
    online: Online | None = Field(None, description="Online serving of the latest values.")
    quality_policy: QualityPolicy | None = Field(None, description="What a failed quality check does.")
    history_limit: int = Field(10, ge=1, le=100, description="Snapshots kept in status.versions.")

    cel_rules = (
        CelRule("!has(self.online) || !has(self.online.enabled) || !self.online.enabled || has(self.entityKey)",
                "online.enabled needs entityKey (online values are looked up by entity)",
                lambda s: s.online is None or not s.online.enabled or s.entity_key is not None,
                field_path=".online.enabled"),
        CelRule("!has(self.online) || !has(self.online.onMissing) || self.online.onMissing != 'impute' || "
                "(has(self.features) && self.features.all(f, has(f.impute) && f.impute.strategy != 'none'))",
                "online.onMissing impute needs features listed, each with an impute strategy other than none",
                lambda s: s.online is None or s.online.on_missing != "impute" or (
                    bool(s.features) and all(f.impute is not None and f.impute.strategy != "none" for f in s.features)),
                field_path=".online.onMissing"),
        _column_not_feature("target", "target"),
        _column_not_feature("entity_key", "entityKey"),
        _column_not_feature("timestamp_column", "timestampColumn"),
        CelRule("!(has(self.target) && has(self.entityKey) && self.target == self.entityKey) && "
                "!(has(self.target) && has(self.timestampColumn) && self.target == self.timestampColumn) && "
                "!(has(self.entityKey) && has(self.timestampColumn) && self.entityKey == self.timestampColumn)",
                "target, entityKey and timestampColumn must name different columns",
                distinct_columns("target", "entity_key", "timestamp_column")),
    )


class SnapshotRef(StatusModel):
    """One materialized snapshot."""

    version: str = Field(description="Snapshot version, e.g. v3.")
    uri: str = Field(
        max_length=1024,
        description="s3:// prefix of the snapshot (data.parquet, transform.json, stats.json, manifest.json).",
    )
    rows: int | None = Field(None, ge=0, description="Rows in the snapshot.")
    created_at: datetime | None = Field(None, description="When the snapshot's manifest was written.")
    sha256: str | None = Field(None, max_length=64, description="sha256 of data.parquet.")
    generation: int | None = Field(None, ge=0, description="metadata.generation of the spec it was built from.")
    spec_hash: str | None = Field(
        None, max_length=64,
        description="sha256 of the spec fields that shape the data (all but materialize, online, historyLimit).",
    )
    trigger: str | None = Field(None, max_length=64, description="Why it was built: Created, SpecChanged, Schedule or Request.")
    request: str | None = Field(
        None, max_length=253, description="With trigger Request: the mlops.dev/materialize value it answered.",
    )
    quality_passed: bool | None = Field(None, description="Every quality check passed on this snapshot.")


class QualityViolation(StatusModel):
    """A failed check."""

    feature: str = Field(description="Feature column that failed.")
    check: str = Field(description="The check: min, max, allowedValues or maxMissingFraction.")
    message: str = Field("", description="What was found.")


class QualityReport(StatusModel):
    """Quality of the latest snapshot."""

    passed: bool | None = Field(None, description="Every check passed.")
    checked_at: datetime | None = Field(None, description="When the checks ran.")
    rows: int | None = Field(None, ge=0, description="Rows checked.")
    violations: list[QualityViolation] | None = Field(None, max_length=100, description="Failed checks (bounded).")
    missing_fraction: dict[str, float] | None = Field(
        None, max_length=MAX_FEATURES, description="Fraction of missing values per feature."
    )


class OnlineStatus(StatusModel):
    """What the last materialization wrote to the online store."""

    version: str | None = Field(None, description="Snapshot whose latest values per entity are online.")
    entities: int | None = Field(None, ge=0, description="Entities written.")
    key: str | None = Field(None, max_length=512, description="Key prefix in the online store: <namespace>/<featureset>.")
    published_at: datetime | None = Field(None, description="When they were written.")


class FeatureSetStatus(StatusBase):
    """Observed state of a FeatureSet."""

    phase: FeatureSetPhase | None = Field(None, description="Pending, Materializing, Ready or Failed.")
    latest_version: str | None = Field(None, description="Newest snapshot that passed the quality policy.")
    versions: list[SnapshotRef] | None = Field(None, max_length=100, description="Recent snapshots, newest last.")
    quality: QualityReport | None = Field(None, description="Quality of the latest materialization.")
    online: OnlineStatus | None = Field(None, description="What the last materialization wrote to the online store.")
    active_job: str | None = Field(None, description="Name of the running materialize Job, if any.")
    active_version: str | None = Field(None, description="Snapshot version the running Job builds.")
    active_trigger: str | None = Field(None, description="Why the running Job was started.")
    active_generation: int | None = Field(None, ge=0, description="metadata.generation the running Job builds.")
    active_spec_hash: str | None = Field(None, max_length=64, description="specHash of the spec the running Job builds.")
    last_started_at: datetime | None = Field(None, description="When the last materialization was started.")
    last_version_number: int | None = Field(
        None, ge=0, description="Highest snapshot number ever assigned (numbers are never reused)."
    )
    handled_request: str | None = Field(
        None, description="Last handled value of the mlops.dev/materialize annotation (a request acts once)."
    )
    last_materialized_at: datetime | None = Field(None, description="When the last materialization finished.")
    next_scheduled_at: datetime | None = Field(None, description="Next scheduled materialization.")


class FeatureSet(KubeObject):
    """A versioned, quality-checked set of features materialized to S3."""

    kind: Literal["FeatureSet"] = Field("FeatureSet", description="FeatureSet.")
    spec: FeatureSetSpec = Field(description="Desired feature set.")
    status: FeatureSetStatus = Field(default_factory=FeatureSetStatus, description="Observed state.")


KIND_INFO = KindInfo(
    kind="FeatureSet",
    plural="featuresets",
    singular="featureset",
    short_names=("fs",),
    model=FeatureSet,
    spec_model=FeatureSetSpec,
    status_model=FeatureSetStatus,
    printer_columns=(
        PrinterColumn("Latest", "string", ".status.latestVersion", "Newest snapshot that passed the quality policy."),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Materializing, Ready or Failed."),
        PrinterColumn("Schedule", "string", ".spec.materialize.schedule", "Re-materialization schedule.", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
