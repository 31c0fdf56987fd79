"""Evaluation metrics by name, as listed in ``spec.training.metrics`` and checked by ``spec.gates``.

Names are the contract with gates and HyperparameterSearch objectives, so they are validated against the
estimator *before* fitting: an unknown name, a regression metric on a classifier, or ``log_loss`` on a
model without probabilities is an ``InvalidInput`` at once, not a failure after an hour of training.
"""

from __future__ import annotations

import math
import warnings as warnings_module
from typing import Any, Callable, Sequence

import numpy as np

from mlops_operator.runtime.train_config import InvalidInput

CLASSIFICATION = "classification"
REGRESSION = "regression"

CLASSIFICATION_METRICS = (
    "accuracy", "precision_macro", "precision_weighted", "recall_macro", "recall_weighted",
    "f1_macro", "f1_weighted", "roc_auc", "log_loss",
)
REGRESSION_METRICS = ("r2", "mae", "mse", "rmse")
NEEDS_PROBA = frozenset({"log_loss"})
NEEDS_SCORES = frozenset({"roc_auc"})  # probabilities, or a decision function
DEFAULTS = {CLASSIFICATION: ("accuracy", "f1_macro"), REGRESSION: ("r2", "rmse")}


def task_of(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return CLASSIFICATION
    if is_regressor(estimator):
        return REGRESSION
    raise InvalidInput(f"{type(estimator).__name__} is neither a classifier nor a regressor")


def _has(estimator: Any, method: str) -> bool:
    try:
        return hasattr(estimator, method)
    except Exception:  # available_if guards may raise other errors on odd configurations
        return False


def select_metrics(requested: Sequence[str], task: str, estimator: Any) -> list[str]:
    """The metrics to compute, in the order asked (duplicates dropped), or defaults for the task."""
    allowed = CLASSIFICATION_METRICS if task == CLASSIFICATION else REGRESSION_METRICS
    names = list(dict.fromkeys(requested)) or list(DEFAULTS[task])
    for name in names:
        if name not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
            raise InvalidInput(f"unknown metric {name!r}; classification: {', '.join(CLASSIFICATION_METRICS)}; "
                               f"regression: {', '.join(REGRESSION_METRICS)}")
        if name not in allowed:
            raise InvalidInput(f"metric {name!r} does not apply to a {task} estimator ({type(estimator).__name__}); "
                               f"choose from {', '.join(allowed)}")
        if name in NEEDS_PROBA and not _has(estimator, "predict_proba"):
            raise InvalidInput(f"metric {name!r} needs predict_proba, which {type(estimator).__name__} does not "
                               "provide with these hyperparameters (e.g. SVC needs probability: true)")
        if name in NEEDS_SCORES and not (_has(estimator, "predict_proba") or _has(estimator, "decision_function")):
            raise InvalidInput(f"metric {name!r} needs predict_proba or decision_function on {type(estimator).__name__}")
    return names


def _scores(estimator: Any, X: Any) -> np.ndarray:
    """Class scores for ROC AUC: positive-class column for binary, the full matrix for multiclass."""
    raw = estimator.predict_proba(X) if _has(estimator, "predict_proba") else estimator.decision_function(X)
    raw = np.asarray(raw)
    return raw[:, 1] if raw.ndim == 2 and raw.shape[1] == 2 else raw


def _metric_fns() -> dict[str, Callable[[Any, Any, Any, np.ndarray], float]]:
    from sklearn import metrics as m

    def avg(fn: Callable[..., float], average: str) -> Callable[[Any, Any, Any, np.ndarray], float]:
        return lambda est, X, y, pred: fn(y, pred, average=average, zero_division=0)

    def roc_auc(est: Any, X: Any, y: Any, pred: np.ndarray) -> float:
        scores = _scores(est, X)
        if scores.ndim == 1:
            return m.roc_auc_score(y, scores)
        return m.roc_auc_score(y, scores, multi_class="ovr", labels=est.classes_)

    return {
        "accuracy": lambda est, X, y, pred: m.accuracy_score(y, pred),
        "precision_macro": avg(m.precision_score, "macro"),
        "precision_weighted": avg(m.precision_score, "weighted"),
        "recall_macro": avg(m.recall_score, "macro"),
        "recall_weighted": avg(m.recall_score, "weighted"),
        "f1_macro": avg(m.f1_score, "macro"),
        "f1_weighted": avg(m.f1_score, "weighted"),
        "roc_auc": roc_auc,
        "log_loss": lambda est, X, y, pred: m.log_loss(y, est.predict_proba(X), labels=est.classes_),
        "r2": lambda est, X, y, pred: m.r2_score(y, pred),
        "mae": lambda est, X, y, pred: m.mean_absolute_error(y, pred),
        "mse": lambda est, X, y, pred: m.mean_squared_error(y, pred),
        "rmse": lambda est, X, y, pred: math.sqrt(m.mean_squared_error(y, pred)),
    }


def compute_metrics(names: Sequence[str], estimator: Any, X: Any, y: Any) -> tuple[dict[str, float | None], list[str]]:
    """(metrics, warnings). A metric undefined on this test split (e.g. ROC AUC with one class present)
    is ``None`` with a warning — never a made-up number, and gates treat a missing value as failing."""
    fns = _metric_fns()
    pred = estimator.predict(X)
    out: dict[str, float | None] = {}
    warnings: list[str] = []
    for name in names:
        value: float | None
        with warnings_module.catch_warnings(record=True) as caught:
            warnings_module.simplefilter("always")
            try:
                value = float(fns[name](estimator, X, y, pred))
            except ValueError as exc:
                value = None
                warnings.append(f"metric {name} undefined on the test split: {exc}")
        if value is not None and not math.isfinite(value):
            reason = "; ".join(str(w.message) for w in caught) or f"value {value}"
            warnings.append(f"metric {name} undefined on the test split: {reason}")
            value = None
        out[name] = value
    return out, warnings
