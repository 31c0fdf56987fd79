"""mlops.dev/v1alpha1: the six kinds as pydantic models, and the registry the CRD generator reads.

Handlers parse a body with ``<Kind>.from_body(body)``; ``KINDS`` lists, per kind, its plural, short names,
models and printer columns.
"""

from mlops_operator.api.v1alpha1 import (
    batchprediction,
    featureset,
    hyperparametersearch,
    modeldeployment,
    modelversion,
    retrainpolicy,
)
from mlops_operator.api.v1alpha1.common import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    BatchPredictionPhase,
    VERSION,
    Condition,
    ConditionStatus,
    FeatureSetPhase,
    HyperparameterSearchPhase,
    KindInfo,
    ModelDeploymentPhase,
    ModelStage,
    ModelVersionPhase,
    PrinterColumn,
    RetrainPolicyPhase,
    TrialState,
    get_condition,
    is_condition_true,
    set_condition,
)
from mlops_operator.api.v1alpha1.batchprediction import BatchPrediction, BatchPredictionSpec, BatchPredictionStatus
from mlops_operator.api.v1alpha1.featureset import FeatureSet, FeatureSetSpec, FeatureSetStatus
from mlops_operator.api.v1alpha1.hyperparametersearch import (
    HyperparameterSearch,
    HyperparameterSearchSpec,
    HyperparameterSearchStatus,
)
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from mlops_operator.api.v1alpha1.modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy, RetrainPolicySpec, RetrainPolicyStatus
from mlops_operator.api.v1alpha1.training import ESTIMATOR_ALLOWLIST, is_allowed_estimator

KINDS: tuple[KindInfo, ...] = (
    featureset.KIND_INFO,
    modelversion.KIND_INFO,
    modeldeployment.KIND_INFO,
    retrainpolicy.KIND_INFO,
    hyperparametersearch.KIND_INFO,
    batchprediction.KIND_INFO,
)
KINDS_BY_NAME: dict[str, KindInfo] = {k.kind: k for k in KINDS}


def kind_info(kind: str) -> KindInfo:
    """The registry entry of ``kind`` (e.g. "ModelVersion"); KeyError for an unknown kind."""
    return KINDS_BY_NAME[kind]


__all__ = [
    "API_VERSION", "BatchPrediction", "BatchPredictionPhase", "BatchPredictionSpec", "BatchPredictionStatus", "CATEGORIES", "ESTIMATOR_ALLOWLIST", "GROUP", "KINDS", "KINDS_BY_NAME", "VERSION",
    "Condition", "ConditionStatus", "FeatureSet", "FeatureSetPhase", "FeatureSetSpec", "FeatureSetStatus",
    "HyperparameterSearch", "HyperparameterSearchPhase", "HyperparameterSearchSpec", "HyperparameterSearchStatus",
    "KindInfo", "ModelDeployment", "ModelDeploymentPhase", "ModelDeploymentSpec", "ModelDeploymentStatus",
    "ModelStage", "ModelVersion", "ModelVersionPhase", "ModelVersionSpec", "ModelVersionStatus", "PrinterColumn",
    "RetrainPolicy", "RetrainPolicyPhase", "RetrainPolicySpec", "RetrainPolicyStatus", "TrialState",
    "get_condition", "is_condition_true", "kind_info", "parse_duration", "set_condition", "is_allowed_estimator",
]
