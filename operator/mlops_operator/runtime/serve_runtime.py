"""`ModelRuntime`: a loaded estimator plus what serving needs around it, with no I/O.

Separate from the served `SklearnModel` and the HTTP layer so a unit test can inject any fitted estimator and
get the exact serving behaviour (schema checks, missing-value handling, window recording) without S3.

A model trained on a FeatureSet is `Pipeline([("features", FeatureTransformer), ("model", estimator)])`:
it takes the RAW feature columns (its `n_features_in_` / `feature_names_in_` are the snapshot's
`inputColumns`), and the rows reach it unchanged, so the fitted transform runs exactly as in training.
Whatever the client can get wrong there is a 400, never a 500: a value the feature's dtype refuses
(`features.dtypes.FeatureValueError`, caught as its base class so serving never imports pandas for it),
or a value left missing after the transform (null with `impute: none`, log1p of
a value <= -1) when the estimator cannot take NaN.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlops_operator.errors import InvalidInput as DataValueError
from mlops_operator.runtime.serve_compiled import CompiledPredictor
from mlops_operator.runtime.serve_drift import FeatureWindow
from mlops_operator.runtime.serve_errors import InferenceError, InvalidInput
from mlops_operator.runtime.serve_feedback import CLASSIFICATION, REGRESSION
from mlops_operator.runtime.serve_protocol import FeatureSchema


def selects_columns_by_name(estimator: Any) -> bool:
    """True if some step picks columns by name, so it must (ColumnTransformer) or had better (a FeatureSet's
    FeatureTransformer: float columns take its fast path, ~4x faster than an object ndarray) get a DataFrame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    # Unpickling a FeatureSet pipeline imported its transform module; without one, pandas stays unloaded.
    transform = sys.modules.get("mlops_operator.features.transform")
    by_name = (ColumnTransformer, transform.FeatureTransformer) if transform is not None else (ColumnTransformer,)
    if isinstance(estimator, by_name):
        return True
    if isinstance(estimator, Pipeline):
        return any(selects_columns_by_name(step) for _, step in estimator.steps)
    return False


class ModelRuntime:
    """Predicts on validated feature matrices and records them in the drift window.

    Input mode: a plain ndarray (fast) unless the estimator was fitted on a DataFrame *and* selects
    columns by name, where only a DataFrame works (or, for a FeatureSet pipeline, works fastest).
    sklearn warns "X does not have valid feature names" for the ndarray path; `mlops-serve` silences
    that one warning at start.

    `estimator=None` serves the compiled form alone: what the model takes and answers comes from the
    compiled form's own schema, and `load_estimator` is called once, on the first row with a missing value
    (which only scikit-learn answers), from the worker thread that needs it.
    """

    def __init__(self, estimator: Any, feature_names: Sequence[str] | None = None, window_rows: int = 2048,
                 compiled: CompiledPredictor | None = None, load_estimator: Callable[[], Any] | None = None):
        if estimator is None:
            if compiled is None or compiled.schema is None or load_estimator is None:
                raise ValueError("without the estimator, a compiled form with its schema and a way to load the "
                                 "estimator are needed")
            fitted_names, n_features, classes = compiled.schema.feature_names, compiled.schema.n_features, compiled.schema.classes
        else:
            if not hasattr(estimator, "predict"):
                raise TypeError(f"{type(estimator).__name__} has no predict(): not a servable estimator")
            fitted_names = getattr(estimator, "feature_names_in_", None)
            n_features, classes = getattr(estimator, "n_features_in_", None), getattr(estimator, "classes_", None)
        names = [str(n) for n in fitted_names] if fitted_names is not None else (list(feature_names) if feature_names else None)
        n_features = n_features or (len(names) if names else None)
        if not n_features:
            raise ValueError("cannot tell how many features the model takes (no n_features_in_, no feature names)")
        self.estimator = estimator
        self._load_estimator = load_estimator
        self._loading = threading.Lock()
        self.schema = FeatureSchema(int(n_features), names)
        self.window = FeatureWindow(self.schema.n_features, window_rows)
        self._frame_columns = names if names and estimator is not None and selects_columns_by_name(estimator) else None
        self.output_dtype = np.asarray(classes).dtype if classes is not None else np.dtype(np.float64)
        # What label feedback scores: right/wrong for a classifier (it has classes), absolute error otherwise.
        self.task = CLASSIFICATION if classes is not None else REGRESSION
        self.numeric_output = self.output_dtype.kind in "biuf"
        # The compiled form answers plain matrices without missing values; everything else stays on sklearn.
        self.compiled = compiled if self._frame_columns is None else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for a checked (rows, n_features) matrix; NaN = missing, left to the model's imputer."""
        self.window.add(x)
        if self.compiled is not None and not np.isnan(x).any():
            y = self.compiled.predict(x)
            self.window.add_predictions(y)
            return y
        estimator = self.estimator if self.estimator is not None else self._estimator()
        features: Any = x
        if self._frame_columns is not None:
            import pandas as pd

            features = pd.DataFrame(x, columns=self._frame_columns)
        try:
            y = np.asarray(estimator.predict(features))
        except DataValueError as exc:  # a value a FeatureSet feature's dtype refuses (e.g. 2.5 for an int)
            raise InvalidInput(str(exc)) from None
        except ValueError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # sklearn appends a tutorial
            if np.isnan(x).any():  # the client sent nulls and this model has no imputer: their error
                raise InvalidInput(f"request has missing (null) feature values and this model cannot impute them: {reason}") from None
            unusable = _missing_after_transform(estimator, features)
            if unusable:
                raise InvalidInput(f"feature value(s) outside what the fitted transform accepts ({', '.join(unusable)} "
                                   f"became missing, e.g. log1p of a value <= -1) and this model cannot impute them: {reason}") from None
            raise
        self.window.add_predictions(y)
        return y

    def _estimator(self) -> Any:
        """The estimator, loaded on first need (once, whichever worker asks first)."""
        with self._loading:
            if self.estimator is None:
                assert self._load_estimator is not None
                try:
                    self.estimator = self._load_estimator()
                except Exception as exc:  # S3 away: this request fails, the next one tries again
                    raise InferenceError(f"rows with missing values are answered by the scikit-learn model, which "
                                         f"did not load: {type(exc).__name__}: {exc}") from None
            return self.estimator


def _missing_after_transform(estimator: Any, features: Any) -> list[str]:
    """Output columns of a pipeline's transform steps that hold NaN for these rows (a diagnosis, run only
    after a failed predict): if non-empty, the request's values, not the model, caused the failure."""
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return []
    try:
        transformed = np.asarray(estimator[:-1].transform(features), dtype=np.float64)
    except Exception:  # the diagnosis must never replace the original error
        return []
    if transformed.ndim != 2:
        return []
    try:
        names = [str(n) for n in estimator[:-1].get_feature_names_out()]
    except Exception:
        names = []
    if len(names) != transformed.shape[1]:
        names = [f"output column {j}" for j in range(transformed.shape[1])]
    return [names[j] for j in np.flatnonzero(np.isnan(transformed).any(axis=0))][:5]
