"""The compiled form of a served model: ``model.onnx`` run by onnxruntime, answering as the estimator does.

The training Job wrote ``model.onnx`` only after it matched the estimator on the version's test rows
(``runtime.train_compile``), and ``metrics.json`` says so (``compiled.available``). The server runs it when
the deployment allows (``MLOPS_COMPILED_MODEL=auto``) and keeps the estimator beside it: rows with a missing
value still go to scikit-learn, because the two route missing values through trees differently, and so do
the error paths (a model that cannot impute answers 400 as before).

Intra-op threads come from the pod's CPU limit (``MLOPS_CPU_LIMIT``, whole cores) and never spin, so an idle
pool costs no CPU next to the event loop.

The trainer writes what serving needs to know about the model into ``model.onnx``'s own metadata
(``SCHEMA_KEYS``: feature count, feature names, classes). With it the server answers from the compiled form
alone and leaves ``model.joblib`` (and with it scikit-learn, scipy and pandas) unloaded until a row with a
missing value asks for the estimator. A ``model.onnx`` without it (trained before) is served beside the
estimator, loaded at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("mlops_operator.serve")

ONNX_FILE = "model.onnx"
PLATFORM = "onnxruntime"
N_FEATURES, FEATURE_NAMES, CLASSES = "mlops.n_features", "mlops.feature_names", "mlops.classes"
SCHEMA_KEYS = (N_FEATURES, FEATURE_NAMES, CLASSES)  # JSON values in the ONNX model's metadata_props


@dataclass(frozen=True)
class CompiledSchema:
    """What the model takes and answers, as the trainer recorded it in ``model.onnx``."""

    n_features: int
    feature_names: list[str] | None
    classes: list[Any] | None  # None for a regressor


def schema_metadata(n_features: int, feature_names: Any, classes: Any) -> dict[str, str] | None:
    """The metadata entries of ``CompiledSchema`` (trainer side); None when the classes would not come back
    from JSON as the same kind of array (e.g. int32 labels return int64): the estimator then stays beside."""
    names = [str(n) for n in feature_names] if feature_names is not None else None
    labels = None
    if classes is not None:
        original = np.asarray(classes)
        labels = original.tolist()
        try:
            restored = np.asarray(json.loads(json.dumps(labels)))
        except (TypeError, ValueError):
            return None
        both_text = original.dtype.kind in "OUS" and restored.dtype.kind in "OUS"
        if restored.dtype != original.dtype and not both_text:
            return None
    return {N_FEATURES: json.dumps(int(n_features)), FEATURE_NAMES: json.dumps(names), CLASSES: json.dumps(labels)}


def read_schema(metadata: Mapping[str, str]) -> CompiledSchema | None:
    """``CompiledSchema`` from an ONNX model's metadata, None when it is absent or unreadable."""
    if not all(key in metadata for key in SCHEMA_KEYS):
        return None
    try:
        n_features = json.loads(metadata[N_FEATURES])
        names = json.loads(metadata[FEATURE_NAMES])
        classes = json.loads(metadata[CLASSES])
    except ValueError:
        return None
    if not isinstance(n_features, int) or n_features < 1:
        return None
    if names is not None and (not isinstance(names, list) or len(names) != n_features):
        return None
    if classes is not None and (not isinstance(classes, list) or not classes):
        return None
    return CompiledSchema(n_features, names, classes)


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
        self.schema = read_schema(self.session.get_modelmeta().custom_metadata_map)
        if classes is None and self.schema is not None:
            classes = self.schema.classes
        self._classes_dtype = np.asarray(classes).dtype if classes is not None else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run([self._output], {self._input: x.astype(self.dtype, copy=False)})[0])
        if self._classes_dtype is not None:
            return out.ravel().astype(self._classes_dtype, copy=False)
        return out.ravel().astype(np.float64, copy=False)


def load_compiled(onnx: bytes | None, estimator: Any, threads: int) -> CompiledPredictor | None:
    """The predictor, or None (logged) when onnxruntime cannot run these bytes: scikit-learn then serves.
    ``estimator`` may be None: the classes then come from the model's own metadata."""
    if onnx is None:
        return None
    try:
        return CompiledPredictor(onnx, getattr(estimator, "classes_", None), threads)
    except Exception as exc:  # never fail the load over the compiled form: the estimator answers correctly
        log.warning("cannot run %s, serving with scikit-learn: %s: %s", ONNX_FILE, type(exc).__name__, exc)
        return None
