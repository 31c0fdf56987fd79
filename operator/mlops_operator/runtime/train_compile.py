"""Compile a fitted model to ONNX at training, and keep the compiled form only if it answers like the model.

The trainer converts the fitted estimator with skl2onnx and runs the result with onnxruntime on the version's
own held-out test rows. The compiled form is kept (``model.onnx``, pinned in the manifest like every file)
only when both are true on every one of those rows:

* a classifier predicts identical classes, and its class probabilities differ by at most ``PROBA_TOLERANCE``;
* a regressor's values differ by at most ``REGRESSION_RTOL`` x max(1, the largest |value| predicted).

Input precision: scikit-learn's trees compare features as float32, so a tree model's float32 graph is tried
first (onnxruntime has no double-precision kernels for some ensembles anyway); anything else tries a
double-precision graph first (exact for linear models). The first candidate that converts, loads and
matches wins.

A forest whose trees split evenly on a test row (a tie, e.g. 20 of 40 trees each way) can get the other
class from float32 sums: such a version is refused with the count of rows that differ, and served by
scikit-learn.

Anything else (no converter for the estimator, a FeatureSet transform skl2onnx cannot express, a mismatch)
leaves the version on scikit-learn, with the reason recorded: never a wrong compiled answer, never a failed
training. The result is ``metrics.json``'s ``compiled`` section, which the operator copies into
``ModelVersion.status.compiled``.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_operator.runtime.serve_compiled import ONNX_FILE, CompiledPredictor, schema_metadata
from mlops_operator.runtime.serve_runtime import selects_columns_by_name

log = logging.getLogger("mlops.train")

FORMAT = "onnx"
PROBA_TOLERANCE = 1e-4
REGRESSION_RTOL = 1e-5
REASON_LIMIT = 512


@dataclass(frozen=True)
class Compiled:
    """The outcome of one conversion: the ``compiled`` report, and the ONNX bytes when it is usable."""

    report: dict[str, Any]
    onnx: bytes | None = field(default=None, repr=False)


def _unavailable(reason: str, seconds: float, **extra: Any) -> Compiled:
    reason = reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 3] + "..."
    return Compiled({"available": False, "reason": reason, "conversionSeconds": round(seconds, 3), **extra})


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unconvertible_step(model: Any) -> str | None:
    """The name of a pipeline step skl2onnx has no converter for (a FeatureSet's FeatureTransformer), if any."""
    from sklearn.pipeline import Pipeline

    from mlops_operator.features.transform import FeatureTransformer

    if isinstance(model, Pipeline):
        for name, step in model.steps:
            if isinstance(step, FeatureTransformer):
                return f"{name} ({type(step).__name__})"
    return None


def _precisions(model: Any) -> tuple[type, type]:
    """Input precisions to try, best first: scikit-learn's trees compare features as float32, so a tree
    model's float32 graph follows the very same paths; everything else computes in double."""
    tree_based = hasattr(model, "tree_") or hasattr(model, "estimators_") or hasattr(model, "_predictors")
    return (np.float32, np.float64) if tree_based else (np.float64, np.float32)


def _convert(model: Any, n_features: int, dtype: type) -> bytes:
    """The ONNX bytes, carrying the schema the server needs to answer without the estimator (serve_compiled)."""
    from skl2onnx import to_onnx

    options = {"zipmap": False} if hasattr(model, "classes_") else None
    proto = to_onnx(model, np.zeros((1, n_features), dtype=dtype), options=options)
    metadata = None if selects_columns_by_name(model) else schema_metadata(
        n_features, getattr(model, "feature_names_in_", None), getattr(model, "classes_", None))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def compare(model: Any, compiled: CompiledPredictor, X: np.ndarray) -> tuple[bool, float, float, str]:
    """(matches, maxDifference, tolerance, why not) of the compiled form against ``model`` on rows ``X``.

    The answers compared are the server's own (``CompiledPredictor.predict``), so what is proven is what
    is served."""
    answers = compiled.predict(X)
    if getattr(model, "classes_", None) is not None:
        expected = np.asarray(model.predict(X))
        wrong = int(np.sum(answers != expected)) if answers.shape == expected.shape else len(X)
        difference = 0.0
        if hasattr(model, "predict_proba"):
            outputs = compiled.session.run(None, {compiled.session.get_inputs()[0].name: X.astype(compiled.dtype)})
            if len(outputs) > 1:
                difference = float(np.max(np.abs(np.asarray(outputs[1], dtype=np.float64) - model.predict_proba(X))))
        if wrong:
            return False, difference, PROBA_TOLERANCE, f"{wrong} of {len(X)} test rows get a different class"
        if difference > PROBA_TOLERANCE:
            return False, difference, PROBA_TOLERANCE, (f"class probabilities differ by {difference:.3g} "
                                                         f"(tolerance {PROBA_TOLERANCE:g})")
        return True, difference, PROBA_TOLERANCE, ""
    expected = np.asarray(model.predict(X), dtype=np.float64).ravel()
    tolerance = REGRESSION_RTOL * max(1.0, float(np.max(np.abs(expected))))
    if answers.shape != expected.shape:
        return False, float("inf"), tolerance, f"compiled output has shape {answers.shape}, not {expected.shape}"
    difference = float(np.max(np.abs(answers - expected)))
    if not difference <= tolerance:
        return False, difference, tolerance, f"values differ by {difference:.3g} (tolerance {tolerance:.3g})"
    return True, difference, tolerance, ""


def compile_model(model: Any, X_test: Any, clock: Any = time.perf_counter) -> Compiled:
    """Convert ``model`` and prove it on ``X_test`` (the version's held-out rows). Never raises."""
    with warnings.catch_warnings():  # converter deprecations and feature-name notes are not the user's
        warnings.simplefilter("ignore")
        return _compile(model, X_test, clock)


def _compile(model: Any, X_test: Any, clock: Any) -> Compiled:
    started = clock()
    step = _unconvertible_step(model)
    if step is not None:
        return _unavailable(f"the FeatureSet transform step {step} has no ONNX converter: served by scikit-learn",
                            clock() - started)
    try:
        X = np.asarray(X_test, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return _unavailable(f"test rows are not numeric: {_first_line(exc)}", clock() - started)
    if X.ndim != 2 or len(X) == 0:
        return _unavailable("no test rows to prove the compiled form on", clock() - started)
    if np.isnan(X).any():
        # scikit-learn and ONNX route missing values through trees differently; the server keeps such rows on
        # scikit-learn, but rows with values must still be checked, so prove on the complete rows only.
        X = X[~np.isnan(X).any(axis=1)]
        if len(X) == 0:
            return _unavailable("every test row has a missing value: nothing to prove the compiled form on",
                                clock() - started)
    try:
        from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator
    except ImportError as exc:  # an image without the ONNX tools still trains and serves
        return _unavailable(f"ONNX conversion is not installed ({_first_line(exc)})", clock() - started)

    name = type(model).__name__
    reasons: list[str] = []
    for dtype in _precisions(model):
        precision = "double" if dtype is np.float64 else "float"
        try:
            onnx = _convert(model, X.shape[1], dtype)
        except (MissingShapeCalculator, MissingConverter):
            return _unavailable(f"skl2onnx has no converter for {name}: served by scikit-learn", clock() - started)
        except Exception as exc:
            reasons.append(f"{precision}: {type(exc).__name__}: {_first_line(exc)}")
            continue
        try:
            matches, difference, tolerance, why = compare(model, CompiledPredictor(onnx, getattr(model, "classes_", None)), X)
        except Exception as exc:  # any converter or runtime failure means: not this candidate
            reasons.append(f"{precision}: {type(exc).__name__}: {_first_line(exc)}")
            continue
        if matches:
            seconds = clock() - started
            log.info("compiled to ONNX (%s inputs, %d bytes) in %.2fs; max difference %.3g on %d test rows",
                     precision, len(onnx), seconds, difference, len(X))
            return Compiled({"available": True, "format": FORMAT, "inputType": precision,
                             "maxDifference": difference, "tolerance": tolerance, "rows": int(len(X)),
                             "conversionSeconds": round(seconds, 3)}, onnx)
        reasons.append(f"{precision}: {why}")
    return _unavailable(f"{name} not compiled, served by scikit-learn: " + "; ".join(reasons), clock() - started)
