"""How a model is trained and judged: shared by ModelVersion and the templates of RetrainPolicy and
HyperparameterSearch (which create ModelVersions), so all three accept exactly the same training block.

The estimator is an import path a CR chooses, so it is untrusted: the CRD admits only the shape
``sklearn.<module>.<Class>`` and ``ESTIMATOR_ALLOWLIST`` narrows the modules the trainer may import.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from mlops_operator.api.v1alpha1.common import ApiModel, CelRule, distinct_columns
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.api.v1alpha1.primitives import (
    ColumnName,
    DataSource,
    Duration,
    ObjectName,
    ResourceRequirements,
    S3Uri,
    Sha256,
)

ESTIMATOR_PATTERN = r"^sklearn\.[a-z_]+(\.[a-z_]+)*\.[A-Z][A-Za-z0-9]+$"
# Module prefixes whose classes are plain supervised estimators with JSON-expressible hyperparameters.
ESTIMATOR_ALLOWLIST: tuple[str, ...] = (
    "sklearn.discriminant_analysis",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.gaussian_process",
    "sklearn.kernel_ridge",
    "sklearn.linear_model",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.svm",
    "sklearn.tree",
)


def is_allowed_estimator(path: str) -> bool:
    """True when ``path`` has the CRD's shape and its module is (under) an allowlisted prefix."""
    if not isinstance(path, str) or not re.match(ESTIMATOR_PATTERN, path):
        return False
    module = path.rsplit(".", 1)[0]
    return any(module == p or module.startswith(p + ".") for p in ESTIMATOR_ALLOWLIST)


def _allowed_estimator(path: str) -> str:
    if not is_allowed_estimator(path):
        raise ValueError(
            f"estimator {path!r} is not allowed: its module must be one of {', '.join(ESTIMATOR_ALLOWLIST)}"
        )
    return path


Estimator = Annotated[
    str, Field(pattern=ESTIMATOR_PATTERN, max_length=256), AfterValidator(_allowed_estimator)
]


class Metric(StrEnum):
    """Metrics the trainer computes on the held-out split (classification, then regression)."""

    ACCURACY = "accuracy"
    PRECISION_MACRO = "precision_macro"
    PRECISION_WEIGHTED = "precision_weighted"
    RECALL_MACRO = "recall_macro"
    RECALL_WEIGHTED = "recall_weighted"
    F1_MACRO = "f1_macro"
    F1_WEIGHTED = "f1_weighted"
    ROC_AUC = "roc_auc"
    LOG_LOSS = "log_loss"
    R2 = "r2"
    MAE = "mae"
    MSE = "mse"
    RMSE = "rmse"


# Lower is better for these; the rest are "higher is better".
LOWER_IS_BETTER = frozenset({Metric.LOG_LOSS, Metric.MAE, Metric.MSE, Metric.RMSE})


def _has(obj: Any, name: str) -> bool:
    return getattr(obj, name) is not None


class PointInTimeLabels(ApiModel):
    """Labels with event times, each joined with the feature values known at its time (point in time)."""

    source: DataSource = Field(description="Where the label rows come from: an s3:// parquet or csv file.")
    entity_column: ColumnName | None = Field(
        None, description="Column of the labels holding the entity; defaults to the FeatureSet's entityKey.")
    timestamp_column: ColumnName = Field(
        description="Column of the labels holding each label's event time (ISO 8601, timestamp or epoch seconds).")
    label_column: ColumnName = Field(description="Column of the labels holding the label (the training target).")
    max_age: Duration | None = Field(
        None, description="A feature value older than this at the label's time is not used (the label is dropped), "
        "e.g. 24h; no bound when absent.")

    cel_rules = (
        CelRule("has(self.source.uri)", "labels.source needs uri: builtin datasets have no event times",
                lambda s: _has(s.source, "uri"), field_path=".source"),
        CelRule("self.labelColumn != self.timestampColumn && "
                "(!has(self.entityColumn) || (self.entityColumn != self.labelColumn && "
                "self.entityColumn != self.timestampColumn))",
                "entityColumn, timestampColumn and labelColumn must name different columns",
                distinct_columns("entity_column", "timestamp_column", "label_column"),
                field_path=".labelColumn"),
    )


class FeatureSetRef(ApiModel):
    """A FeatureSet snapshot to train on."""

    name: ObjectName = Field(description="Name of a FeatureSet in the same namespace.")
    version: str = Field(
        "", max_length=63,
        description='Snapshot version; "" means the latest Ready one, resolved into status.lineage.',
    )


class TrainingFeatureSetRef(FeatureSetRef):
    """A FeatureSet snapshot to train on, with its own target or with point-in-time labels."""

    labels: PointInTimeLabels | None = Field(
        None, description="Train on these labels, each joined as of its event time with the snapshot's feature "
        "history (the FeatureSet needs entityKey and timestampColumn); without it, the snapshot's target is the label.")


class TrainingDataset(DataSource):
    """A dataset read directly, without a FeatureSet: a builtin one, or an s3:// file with a label column."""

    target: ColumnName | None = Field(None, description="Label column of uri (builtin datasets have their own).")

    cel_rules = DataSource.cel_rules + (
        CelRule("has(self.uri) == has(self.target)",
                "target is required with uri and not allowed with builtin",
                lambda s: _has(s, "uri") == _has(s, "target"), field_path=".target"),
    )


class Split(ApiModel):
    """How rows are split into train and test sets."""

    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out for metrics (0..1).")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Random seed of the split and of the estimator.")
    stratify: bool = Field(True, description="Keep class proportions in both sets (classification only).")


class TrainingSpec(ApiModel):
    """What to train on, with which estimator and settings, and which metrics to compute."""

    feature_set: TrainingFeatureSetRef | None = Field(
        None, description="Train on a FeatureSet snapshot (or use dataset).")
    dataset: TrainingDataset | None = Field(None, description="Train on a dataset directly (or use featureSet).")
    estimator: Estimator = Field(
        description="Import path of a scikit-learn estimator, e.g. sklearn.ensemble.RandomForestClassifier."
    )
    hyperparameters: dict[str, Any] | None = Field(
        None, description="Keyword arguments of the estimator, e.g. {n_estimators: 200}."
    )
    split: Split | None = Field(None, description="Train/test split; defaults to 20% test, seed 42, stratified.")
    metrics: list[Metric] | None = Field(
        None, min_length=1, max_length=16,
        description="Metrics to compute; defaults by task (classification: accuracy, f1_macro; regression: r2, rmse).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    resources: ResourceRequirements | None = Field(None, description="Resources of the training Job's container.")
    timeout: Duration = Field("30m", description="Deadline of the training Job (activeDeadlineSeconds), e.g. 30m.")
    pod: PodOverrides | None = Field(
        None, description="Service account, pull secrets, placement and security overrides of the training pod.")

    cel_rules = (
        CelRule("has(self.featureSet) != has(self.dataset)", "exactly one of featureSet or dataset must be set",
                lambda s: _has(s, "feature_set") != _has(s, "dataset")),
    )


class MustBeatStable(ApiModel):
    """Require the new version to beat the version a ModelDeployment serves as stable."""

    model_deployment: ObjectName = Field(description="ModelDeployment whose stable version is the bar.")
    metric: Metric = Field(description="Metric compared (direction taken from the metric).")
    margin: float = Field(0.0, ge=0.0, description="How much better than stable the new version must be.")


class Gates(ApiModel):
    """Conditions a trained version must meet to become Ready; otherwise it is Rejected."""

    min_metrics: dict[Metric, float] | None = Field(
        None, max_length=16, description="Lower bounds of metrics, e.g. {accuracy: 0.9}."
    )
    max_metrics: dict[Metric, float] | None = Field(
        None, max_length=16, description="Upper bounds of metrics where lower is better, e.g. {log_loss: 0.3}."
    )
    must_beat_stable: MustBeatStable | None = Field(None, description="Compare against a deployment's stable version.")


def _gate_metrics_listed(spec: Any) -> bool:
    training, gates = spec.training, spec.gates
    if training is None or gates is None or not training.metrics:
        return True
    named = set((gates.min_metrics or {}) | (gates.max_metrics or {}))
    if gates.must_beat_stable is not None:
        named.add(gates.must_beat_stable.metric)
    return named <= set(training.metrics)


def gate_metric_rule(training_optional: bool) -> CelRule:
    """Gates may only name metrics the training computes (when training lists its metrics)."""
    guard = "!has(self.training) || " if training_optional else ""
    rule = (
        f"{guard}!has(self.gates) || !has(self.training.metrics) || ("
        "(!has(self.gates.minMetrics) || self.gates.minMetrics.all(k, k in self.training.metrics)) && "
        "(!has(self.gates.maxMetrics) || self.gates.maxMetrics.all(k, k in self.training.metrics)) && "
        "(!has(self.gates.mustBeatStable) || self.gates.mustBeatStable.metric in self.training.metrics))"
    )
    return CelRule(rule, "gates may only use metrics listed in training.metrics", _gate_metrics_listed,
                   field_path=".gates")


class ModelVersionTemplate(ApiModel):
    """The training and gates of ModelVersions created by a RetrainPolicy or HyperparameterSearch."""

    labels: dict[str, str] | None = Field(
        None, max_length=16,
        description="Labels of each created ModelVersion, e.g. the channel a ModelDeployment's track.matchLabels follows.",
    )
    training: TrainingSpec = Field(description="Training of each created ModelVersion.")
    gates: Gates | None = Field(None, description="Gates of each created ModelVersion.")

    cel_rules = (gate_metric_rule(training_optional=False),)


class ArtifactRef(ApiModel):
    """An existing model artifact to register instead of training one."""

    uri: S3Uri = Field(description="s3:// prefix of the artifact directory (holding model.joblib and manifest.json).")
    sha256: Sha256 = Field(description="sha256 of model.joblib; must match the manifest, checked before any use.")

