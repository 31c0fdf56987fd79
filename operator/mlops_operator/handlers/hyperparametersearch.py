"""HyperparameterSearch: validated (template references must exist); trials come later."""

from mlops_operator.api.v1alpha1 import hyperparametersearch
from mlops_operator.handlers import validate_only
from mlops_operator.logic.references import training_references

validate_only.register(
    hyperparametersearch.KIND_INFO,
    lambda hps: training_references(hps.spec.template.training, hps.spec.template.gates, prefix="spec.template"),
    waiting_phase="Pending",
    message="spec is valid; searches are not enabled in this operator release, so no trial starts yet")
