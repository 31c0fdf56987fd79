"""FeatureSet: validated and accepted; materialization arrives with the feature-store controller."""

from mlops_operator.api.v1alpha1 import featureset
from mlops_operator.handlers import validate_only

validate_only.register(
    featureset.KIND_INFO, lambda fs: [], waiting_phase="Pending",
    message="spec is valid; materialization is not enabled in this operator release, so no snapshot is made yet")
