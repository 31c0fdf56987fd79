"""`ModelRuntime`: a loaded estimator plus what serving needs around it, with no I/O.

Separate from the kserve `Model` and the HTTP layer so a unit test can inject any fitted estimator and
get the exact serving behaviour (schema checks, missing-value handling, window recording) without S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from kserve.errors import InvalidInput

from mlops_operator.runtime.serve_drift import FeatureWindow
from mlops_operator.runtime.serve_protocol import FeatureSchema


def _selects_columns_by_name(estimator: Any) -> bool:
    """True if some step picks columns by name (a ColumnTransformer), so it must be fed a DataFrame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, ColumnTransformer):
        return True
    if isinstance(estimator, Pipeline):
        return any(_selects_columns_by_name(step) for _, step in estimator.steps)
    return False


class ModelRuntime:
    """Predicts on validated feature matrices and records them in the drift window.

    Input mode: a plain ndarray (fast) unless the estimator was fitted on a DataFrame *and* selects
    columns by name, where only a DataFrame works. sklearn warns "X does not have valid feature names"
    for the ndarray path; `mlops-serve` silences that one warning at start.
    """

    def __init__(self, estimator: Any, feature_names: Sequence[str] | None = None, window_rows: int = 2048):
        if not hasattr(estimator, "predict"):
            raise TypeError(f"{type(estimator).__name__} has no predict(): not a servable estimator")
        fitted_names = getattr(estimator, "feature_names_in_", None)
        names = [str(n) for n in fitted_names] if fitted_names is not None else (list(feature_names) if feature_names else None)
        n_features = getattr(estimator, "n_features_in_", None) or (len(names) if names else None)
        if not n_features:
            raise ValueError("cannot tell how many features the model takes (no n_features_in_, no feature names)")
        self.estimator = estimator
        self.schema = FeatureSchema(int(n_features), names)
        self.window = FeatureWindow(self.schema.n_features, window_rows)
        self._frame_columns = names if names and _selects_columns_by_name(estimator) else None
        classes = getattr(estimator, "classes_", None)
        self.output_dtype = np.asarray(classes).dtype if classes is not None else np.dtype(np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for a checked (rows, n_features) matrix; NaN = missing, left to the model's imputer."""
        self.window.add(x)
        features: Any = x
        if self._frame_columns is not None:
            import pandas as pd

            features = pd.DataFrame(x, columns=self._frame_columns)
        try:
            y = np.asarray(self.estimator.predict(features))
        except ValueError as exc:
            if np.isnan(x).any():  # the client sent nulls and this model has no imputer: their error
                raise InvalidInput(f"request has missing (null) feature values and this model cannot impute them: {exc}") from None
            raise
        self.window.add_predictions(y)
        return y
