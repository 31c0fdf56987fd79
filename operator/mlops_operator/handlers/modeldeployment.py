"""ModelDeployment: validated (spec.version must name a ModelVersion of the same model); rollouts come later."""

from mlops_operator.api.v1alpha1 import modeldeployment
from mlops_operator.handlers import validate_only
from mlops_operator.logic.references import Reference


def references_of(md: modeldeployment.ModelDeployment) -> list[Reference]:
    spec = md.spec
    return [Reference("ModelVersion", spec.version, "spec.version", model=spec.model)] if spec.version else []


validate_only.register(
    modeldeployment.KIND_INFO, references_of, waiting_phase="Pending",
    message="spec is valid; rollouts are not enabled in this operator release, so nothing is served yet")
