"""The ModelVersion of one HyperparameterSearch trial (pure).

A trial is an ordinary ModelVersion: the ModelVersion controller trains it, records its metrics and
lineage and judges it by the template's gates. What makes it a trial is only metadata:

- labels ``mlops.dev/hyperparametersearch: <search>`` and ``mlops.dev/trial: "<N>"`` (plus the template's
  labels, which ours override), so ``kubectl get mv -l mlops.dev/hyperparametersearch=<search>`` lists a
  search's trials and the ModelVersion's lineage names the search that trained it;
- annotations with the search's uid (a trial left behind by a deleted search of the same name is never
  mistaken for one of ours) and the fingerprint of the search spec it was built from.

No owner reference: a trial is a registered model version with its own artifacts and lineage, and a
deployment may serve it; deleting the search must not garbage-collect what it produced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.hyperparametersearch import HyperparameterSearchSpec
from mlops_operator.builders.labels import API_VERSION, LABEL_MANAGED_BY, LABEL_MODEL, MANAGED_BY
from mlops_operator.builders.names import child_name, label_value

LABEL_SEARCH = "mlops.dev/hyperparametersearch"
LABEL_TRIAL = "mlops.dev/trial"
LABEL_BEST_OF = "mlops.dev/best-of"
ANNOTATION_SEARCH_UID = "mlops.dev/hyperparametersearch-uid"
ANNOTATION_SPEC = "mlops.dev/hyperparametersearch-spec"
# Editing these after the first trial applies; every other spec field is fixed once a trial exists.
EDITABLE_FIELDS = ("maxTrials", "parallelism", "earlyStopping", "registerBest", "retainBest")


def trial_name(search: str, number: int, uid: str = "") -> str:
    """``<search>-t<N>``; with ``uid`` the fallback ``<search>-<uid[:5]>-t<N>`` for a name already taken.

    >>> trial_name("bc-search", 3)
    'bc-search-t3'
    """
    return child_name(search, uid[:5], f"t{number}")


def spec_fingerprint(spec: HyperparameterSearchSpec) -> str:
    """sha256 of what trials are sampled and trained from: the spec without its editable fields.

    Defaults are left out, so a field added with a default in a later release changes no fingerprint.
    """
    doc = spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    for key in EDITABLE_FIELDS:
        doc.pop(key, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TrialInput:
    search: str                  # name of the HyperparameterSearch
    search_uid: str
    spec: HyperparameterSearchSpec
    number: int                  # 1-based trial number
    name: str                    # the ModelVersion's name (recorded in status before this is built)
    parameters: Mapping[str, Any]


def build_trial(t: TrialInput) -> dict[str, Any]:
    """The trial ModelVersion: the template's training with the trial's parameters over its hyperparameters."""
    template = t.spec.template
    training = template.training.to_dict()
    training["hyperparameters"] = {**(template.training.hyperparameters or {}), **t.parameters}
    spec: dict[str, Any] = {"model": t.spec.model, "training": training}
    if template.gates is not None:
        spec["gates"] = template.gates.to_dict()
    labels = {**(template.labels or {}), LABEL_MODEL: label_value(t.spec.model), LABEL_MANAGED_BY: MANAGED_BY,
              LABEL_SEARCH: label_value(t.search), LABEL_TRIAL: str(t.number)}
    annotations = {ANNOTATION_SEARCH_UID: t.search_uid, ANNOTATION_SPEC: spec_fingerprint(t.spec)}
    return {"apiVersion": API_VERSION, "kind": "ModelVersion",
            "metadata": {"name": t.name, "labels": labels, "annotations": annotations},
            "spec": spec}
