"""RetrainPolicy: validated (the template's FeatureSet / ModelDeployment must exist); triggers come later."""

from mlops_operator.api.v1alpha1 import retrainpolicy
from mlops_operator.handlers import validate_only
from mlops_operator.logic.references import training_references

validate_only.register(
    retrainpolicy.KIND_INFO,
    lambda rp: training_references(rp.spec.template.training, rp.spec.template.gates, prefix="spec.template"),
    waiting_phase="Idle",  # RetrainPolicyPhase has no Pending; Idle + the Accepted message say "waiting"
    message="spec is valid; triggers are not acted on in this operator release, so no retrain starts yet")
