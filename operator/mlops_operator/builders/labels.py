"""The labels and owner references every child object carries.

Labels are how children are found (``kubectl get jobs -l mlops.dev/model=bc``) and how the operator
lists them; owner references make the garbage collector remove them with their parent.
"""

from __future__ import annotations

from typing import Any, Mapping

from mlops_operator.builders.names import label_value

GROUP = "mlops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY = "mlops-operator"

LABEL_MODEL = f"{GROUP}/model"
LABEL_MODELVERSION = f"{GROUP}/modelversion"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_NAME = "app.kubernetes.io/name"


def model_labels(model: str, model_version: str | None = None, component: str | None = None) -> dict[str, str]:
    """Labels for a child of a model (and, when given, of one of its versions)."""
    labels = {LABEL_MODEL: label_value(model), LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: "mlops-runtime"}
    if model_version:
        labels[LABEL_MODELVERSION] = label_value(model_version)
    if component:
        labels[LABEL_COMPONENT] = component
    return labels


def runtime_job_labels(owner_label: str, owner: str, component: str, run_label: str,
                       run: str | None = None) -> dict[str, str]:
    """Labels of a runtime Job owned by one object (a FeatureSet's materialize Job, a BatchPrediction's run)."""
    labels = {owner_label: label_value(owner), LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: "mlops-runtime",
              LABEL_COMPONENT: component}
    if run:
        labels[run_label] = label_value(run)
    return labels


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to ``owner`` (a custom resource body), for garbage collection."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
