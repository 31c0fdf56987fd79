"""The ModelVersion a RetrainPolicy creates, and the labels that say who created a ModelVersion (pure).

The name is a function of the policy and the retrain number (``<policy>-r<N>``): the number is recorded in
the policy's status before the object is created, so a crash in between creates the same name again and
AlreadyExists is success.

Lineage is a label, not an owner reference: a controller owner reference would let the garbage collector
delete every registered (possibly serving) version with the policy that trained it. The policy's uid
rides along as an annotation so a policy re-created under the same name can tell its own versions from
its predecessor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_operator.api.v1alpha1.common import API_VERSION
from mlops_operator.api.v1alpha1.training import ModelVersionTemplate
from mlops_operator.builders.names import child_name, label_value

LABEL_RETRAINPOLICY = "mlops.dev/retrainpolicy"
LABEL_HYPERPARAMETERSEARCH = "mlops.dev/hyperparametersearch"
LABEL_TRIGGER = "mlops.dev/trigger"
ANNOTATION_TRIGGER_DETAIL = "mlops.dev/trigger-detail"
ANNOTATION_POLICY_UID = "mlops.dev/retrainpolicy-uid"
ANNOTATION_DELETE_ARTIFACTS = "mlops.dev/delete-artifacts"  # honoured by the ModelVersion delete handler
# Label of a created ModelVersion -> the kind of its creator (``status.lineage.trainedBy``).
TRAINED_BY_LABELS = {LABEL_RETRAINPOLICY: "RetrainPolicy", LABEL_HYPERPARAMETERSEARCH: "HyperparameterSearch"}
MAX_DETAIL = 1024


def model_version_name(policy: str, number: int) -> str:
    """``<policy>-r<number>``, shortened with a hash when it would exceed 63 characters.

    >>> model_version_name("bc-retrain", 3)
    'bc-retrain-r3'
    """
    return child_name(policy, f"r{number}")


def policy_selector(policy: str) -> str:
    """The label selector of every ModelVersion a policy named ``policy`` created."""
    return f"{LABEL_RETRAINPOLICY}={label_value(policy)}"


@dataclass(frozen=True)
class RetrainInput:
    policy: str
    namespace: str
    policy_uid: str
    model: str
    template: ModelVersionTemplate
    name: str                 # the ModelVersion's name (model_version_name)
    source: str               # the trigger: alert, schedule, metric, featureSet or manual
    detail: str
    delete_artifacts: bool = False  # annotate mlops.dev/delete-artifacts: "true"
    feature_set_version: str | None = None  # pin training.featureSet.version to this snapshot


def build_model_version(inp: RetrainInput) -> dict[str, Any]:
    """The ModelVersion manifest: the template's training and gates, its labels plus ours (ours win)."""
    labels = dict(inp.template.labels or {})
    labels.update({LABEL_RETRAINPOLICY: label_value(inp.policy), LABEL_TRIGGER: label_value(inp.source)})
    spec: dict[str, Any] = {"model": inp.model, "training": inp.template.training.to_dict()}
    if inp.feature_set_version and "featureSet" in spec["training"]:
        spec["training"]["featureSet"]["version"] = inp.feature_set_version
    if inp.template.gates is not None:
        spec["gates"] = inp.template.gates.to_dict()
    annotations = {ANNOTATION_TRIGGER_DETAIL: inp.detail[:MAX_DETAIL], ANNOTATION_POLICY_UID: inp.policy_uid}
    if inp.delete_artifacts:
        annotations[ANNOTATION_DELETE_ARTIFACTS] = "true"
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": inp.name,
            "namespace": inp.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
