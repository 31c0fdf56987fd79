"""Build the estimator a ModelVersion names — only from an allowlist, never by importing what a CR says.

A CR is untrusted input: ``estimator: os.system`` must not become an import. The path must have the exact
form ``sklearn.<family>.<Class>``, the family must be one of ``ALLOWED_MODULES`` and the class must be in
that module's public ``__all__`` and be a classifier or regressor. Only then is the (already installed,
scikit-learn owned) module imported. ``check_estimator_path`` needs no scikit-learn, so the operator (and
its admission checks) can share the rule without the runtime dependencies.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.training import ESTIMATOR_ALLOWLIST
from mlops_operator.runtime.train_config import InvalidInput

# One allowlist for apply-time checks (the API) and the trainer: plain supervised estimator families.
ALLOWED_MODULES = frozenset(ESTIMATOR_ALLOWLIST)
ESTIMATOR_PATH = re.compile(r"^(sklearn\.[a-z][a-z_]*)\.([A-Z][A-Za-z0-9]*)$")


def check_estimator_path(path: str) -> tuple[str, str]:
    """Split ``sklearn.<family>.<Class>`` into (module, class) or raise InvalidInput saying why not."""
    match = ESTIMATOR_PATH.match(path or "")
    if not match:
        raise InvalidInput(
            f"estimator {path!r} is not allowed: it must look like 'sklearn.<module>.<Class>' "
            "(e.g. sklearn.ensemble.RandomForestClassifier)"
        )
    module, cls = match.groups()
    if module not in ALLOWED_MODULES:
        raise InvalidInput(
            f"estimator {path!r} is not allowed: module {module!r} is not in the allowlist "
            f"({', '.join(sorted(ALLOWED_MODULES))})"
        )
    return module, cls


def resolve_estimator_class(path: str) -> type:
    """The allowlisted class object (imports only an allowlisted scikit-learn module)."""
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    module_name, cls_name = check_estimator_path(path)
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name, None)
    public = cls_name in getattr(module, "__all__", (cls_name,))
    # Defined in that family (not a re-exported helper such as sklearn.base.BaseEstimator).
    own = isinstance(cls, type) and cls.__module__.split(".")[:2] == module_name.split(".")
    if not (public and own):
        raise InvalidInput(f"estimator {path!r} is not allowed: {module_name} has no public estimator {cls_name!r}")
    if not issubclass(cls, BaseEstimator):
        raise InvalidInput(f"estimator {path!r} is not allowed: not a scikit-learn estimator class")
    try:
        probe = cls()
    except TypeError as exc:  # abstract bases, meta-estimators that need estimator objects
        raise InvalidInput(f"estimator {path!r} is not supported: it cannot be built from "
                           f"hyperparameters alone ({exc})") from exc
    if not (is_classifier(probe) or is_regressor(probe)):
        raise InvalidInput(f"estimator {path!r} is not allowed: only classifiers and regressors can be trained")
    return cls


def check_hyperparameters(path: str, valid: set[str], hyperparameters: Mapping[str, Any]) -> None:
    """Every key must be a parameter of the estimator; unknown keys are named, with a suggestion."""
    unknown = sorted(set(hyperparameters) - valid)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(valid), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise InvalidInput(
        f"unknown hyperparameter {', '.join(hints)} for {path}; valid: {', '.join(sorted(valid))}"
    )


def build_estimator(path: str, hyperparameters: Mapping[str, Any]) -> Any:
    """An unfitted estimator with the hyperparameters applied and validated (before any data is read)."""
    from sklearn.utils._param_validation import InvalidParameterError

    cls = resolve_estimator_class(path)
    estimator = cls()
    check_hyperparameters(path, set(estimator.get_params(deep=True)), hyperparameters)
    try:
        estimator.set_params(**dict(hyperparameters))
        validate = getattr(estimator, "_validate_params", None)  # sklearn's own constraint check, pre-fit
        if validate is not None:
            validate()
    except (InvalidParameterError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid hyperparameter for {path}: {exc}") from exc
    return estimator


def effective_parameters(estimator: Any) -> dict[str, Any]:
    """The estimator's own parameters, JSON-safe (objects become their repr), for status.parameters."""
    out: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        try:
            json.dumps(value, allow_nan=False)
            out[key] = value
        except (TypeError, ValueError):
            out[key] = repr(value)
    return out
