"""The compiled form of a served model: ``model.onnx`` run by onnxruntime, answering as the estimator does.

The training Job wrote ``model.onnx`` only after it matched the estimator on the version's test rows
(``runtime.train_compile``), and ``metrics.json`` says so (``compiled.available``). The server runs it when
the deployment allows (``MLOPS_COMPILED_MODEL=auto``) and keeps the estimator beside it: rows with a missing
value still go to scikit-learn, because the two route missing values through trees differently, and so do
the error paths (a model that cannot impute answers 400 as before).

Intra-op threads come from the pod's CPU limit (``MLOPS_CPU_LIMIT``, whole cores) and never spin, so an idle
pool costs no CPU next to the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger("mlops_operator.serve")

ONNX_FILE = "model.onnx"
PLATFORM = "onnxruntime"


def compiled_allowed(setting: str, report: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> tuple[bool, str]:
    """(use the compiled form, why / why not) from the deployment's setting and the version's own record."""
    if setting == "off":
        return False, "serving.compiledModel is off"
    compiled = (report or {}).get("compiled")
    if not isinstance(compiled, Mapping) or compiled.get("available") is not True:
        reason = compiled.get("reason") if isinstance(compiled, Mapping) else None
        return False, f"the version has no compiled form ({reason or 'none recorded'})"
    if ONNX_FILE not in manifest.get("files", {}):
        return False, f"{ONNX_FILE} is not listed in the manifest"
    return True, "compiled form recorded as matching the model on its test rows"


class CompiledPredictor:
    """``predict`` of an estimator through onnxruntime: same classes (and class dtype), same values."""

    def __init__(self, onnx: bytes, classes: Any = None, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{ONNX_FILE} takes {len(inputs)} inputs, not one matrix")
        self._input = inputs[0].name
        self.dtype = np.float32 if inputs[0].type == "tensor(float)" else np.float64
        self._output = self.session.get_outputs()[0].name  # the label for a classifier, the value otherwise
        self._classes_dtype = np.asarray(classes).dtype if classes is not None else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run([self._output], {self._input: x.astype(self.dtype, copy=False)})[0])
        if self._classes_dtype is not None:
            return out.ravel().astype(self._classes_dtype, copy=False)
        return out.ravel().astype(np.float64, copy=False)


def load_compiled(onnx: bytes | None, estimator: Any, threads: int) -> CompiledPredictor | None:
    """The predictor, or None (logged) when onnxruntime cannot run these bytes: scikit-learn then serves."""
    if onnx is None:
        return None
    try:
        return CompiledPredictor(onnx, getattr(estimator, "classes_", None), threads)
    except Exception as exc:  # never fail the load over the compiled form: the estimator answers correctly
        log.warning("cannot run %s, serving with scikit-learn: %s: %s", ONNX_FILE, type(exc).__name__, exc)
        return None
