"""What the training Job is asked to do, read from its environment (see ``runtime.train`` for the names).

The operator's Job builder renders ``ModelVersion.spec.training`` as JSON into ``MLOPS_TRAINING`` (camelCase
exactly as in the CRD). Fields this trainer does not use (``resources``, ``timeout``) are ignored: the
Job enforces them. Everything wrong here is the user's input, so it surfaces as ``InvalidInput`` (exit 2)
with a message that names the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.providers.storage import S3Uri
from mlops_operator.runtime.job_main import InvalidInput, env_owner, env_prefix, parse_json_object

ENV_MODEL = "MLOPS_MODEL"
ENV_MODEL_VERSION = "MLOPS_MODEL_VERSION"
ENV_TRAINING = "MLOPS_TRAINING"
ENV_ARTIFACT_PREFIX = "MLOPS_ARTIFACT_PREFIX"
ENV_FEATURESET_URI = "MLOPS_FEATURESET_URI"
ENV_BASELINE = "MLOPS_BASELINE"


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Dataset(_Spec):
    builtin: str | None = Field(None, description="A dataset bundled with scikit-learn, e.g. breast_cancer.")
    uri: str | None = Field(None, description="s3:// URI of a parquet or csv file.")
    format: str | None = Field(None, pattern="^(parquet|csv)$", description="Defaults from the file extension.")
    target: str | None = Field(None, description="Label column (required with uri).")

    @model_validator(mode="after")
    def _one_source(self) -> "Dataset":
        if (self.builtin is None) == (self.uri is None):
            raise ValueError("exactly one of dataset.builtin or dataset.uri must be set")
        if self.uri is not None and not self.target:
            raise ValueError("dataset.target is required with dataset.uri")
        return self


class LabelsSource(_Spec):
    uri: str | None = Field(None, description="s3:// URI of a parquet or csv file of labels.")
    format: str | None = Field(None, pattern="^(parquet|csv)$", description="Defaults from the file extension.")

    @model_validator(mode="after")
    def _uri(self) -> "LabelsSource":
        if not self.uri:
            raise ValueError("labels.source.uri is required: builtin datasets have no event times")
        return self


class Labels(_Spec):
    source: LabelsSource
    entity_column: str | None = Field(None, alias="entityColumn")
    timestamp_column: str = Field(alias="timestampColumn")
    label_column: str = Field(alias="labelColumn")
    max_age: str | None = Field(None, alias="maxAge")

    @model_validator(mode="after")
    def _max_age(self) -> "Labels":
        if self.max_age is not None:
            parse_duration(self.max_age)
        return self

    @property
    def max_age_delta(self) -> timedelta | None:
        return parse_duration(self.max_age) if self.max_age else None


class FeatureSetRef(_Spec):
    name: str
    version: str = ""
    labels: Labels | None = None


class Split(_Spec):
    test_fraction: float = Field(0.2, alias="testFraction", gt=0.0, lt=1.0)
    seed: int = 42
    stratify: bool = True


class Training(_Spec):
    feature_set: FeatureSetRef | None = Field(None, alias="featureSet")
    dataset: Dataset | None = None
    estimator: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    split: Split = Field(default_factory=Split)
    metrics: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_input(self) -> "Training":
        if (self.feature_set is None) == (self.dataset is None):
            raise ValueError("exactly one of training.featureSet or training.dataset must be set")
        return self


@dataclass(frozen=True)
class BaselineRef:
    """The stable version to score on this version's test rows (``mustBeatStable``; ``runtime.train_baseline``)."""

    version: str
    uri: str
    sha256: str | None = None  # of its model.joblib or of its manifest: the pin the server checks too


def parse_baseline(env: Mapping[str, str]) -> BaselineRef | None:
    """``MLOPS_BASELINE`` = ``{"version", "uri", "sha256"}``, or None when the operator set none."""
    raw = env.get(ENV_BASELINE)
    if not raw:
        return None
    doc = parse_json_object(raw, ENV_BASELINE, "the stable version to score: {version, uri, sha256}")
    version, uri, sha = doc.get("version"), doc.get("uri"), doc.get("sha256")
    if not (isinstance(version, str) and version and isinstance(uri, str) and uri):
        raise InvalidInput(f"{ENV_BASELINE} needs a version and a uri: {json.dumps(doc)[:200]}")
    return BaselineRef(version, uri, sha if isinstance(sha, str) and sha else None)


@dataclass(frozen=True)
class TrainConfig:
    model: str
    model_version: str
    training: Training
    artifact_prefix: S3Uri
    feature_set_uri: S3Uri | None = None  # the resolved snapshot prefix when training.featureSet is set
    owner: Mapping[str, str] | None = None  # namespace, kind, name, uid of the ModelVersion (in the manifest)
    spec_hash: str | None = None            # hash of the spec the artifact is trained from (in the manifest)
    baseline: BaselineRef | None = None     # mustBeatStable: the stable version to score on the same test rows


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"training.{loc}: {err['msg']}" if loc else f"training: {err['msg']}")
    return "; ".join(parts)


def parse_training(raw: str) -> Training:
    data = parse_json_object(raw, ENV_TRAINING, "ModelVersion spec.training")
    try:
        return Training.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(_pydantic_message(exc)) from exc


def no_feature_set_uri(ref: FeatureSetRef) -> InvalidInput:
    return InvalidInput(f"training.featureSet {ref.name!r} is set but {ENV_FEATURESET_URI} is not: the operator "
                        "must pass the resolved snapshot prefix (s3://<bucket>/features/<namespace>/<name>/<version>/)")


def _feature_set_uri(env: Mapping[str, str], training: Training) -> S3Uri | None:
    """The snapshot prefix: the operator resolves ``training.featureSet`` (name + version) to it; the
    trainer never lists S3 to guess a "latest" version itself."""
    if training.feature_set is None:
        return None
    if not env.get(ENV_FEATURESET_URI):
        raise no_feature_set_uri(training.feature_set)
    return env_prefix(env, ENV_FEATURESET_URI)


def load_config(env: Mapping[str, str] | None = None) -> TrainConfig:
    env = os.environ if env is None else env
    missing = [n for n in (ENV_MODEL, ENV_MODEL_VERSION, ENV_TRAINING, ENV_ARTIFACT_PREFIX) if not env.get(n)]
    if missing:
        raise InvalidInput(f"missing environment variable(s): {', '.join(missing)}")
    prefix = env_prefix(env, ENV_ARTIFACT_PREFIX)
    training = parse_training(env[ENV_TRAINING])
    owner, spec_hash = env_owner(env)
    return TrainConfig(
        model=env[ENV_MODEL],
        model_version=env[ENV_MODEL_VERSION],
        training=training,
        artifact_prefix=prefix,
        feature_set_uri=_feature_set_uri(env, training),
        owner=owner,
        spec_hash=spec_hash,
        baseline=parse_baseline(env),
    )
