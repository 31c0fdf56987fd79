"""The served model: `load()` from verified S3 bytes, `infer_now()` for V1 and V2.

The contract is kserve's model contract without kserve itself (readiness via `self.ready`, dict in/out for
V1, `serve_v2.Request`/`Response` for V2, `InvalidInput`/`ModelNotReady`/`InferenceError` for failures), so
the serving process imports no inference framework.

Fail closed: `load()` sets `ready` only after every file it uses matched the sha256 in `manifest.json`
(and, if pinned, the registry's sha256 for `model.joblib`); otherwise the server stays not Ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_operator.providers.storage import ArtifactStore, IntegrityError, encode_manifest, sha256_hex
from mlops_operator.runtime.serve_compiled import ONNX_FILE, PLATFORM, compiled_allowed, load_compiled
from mlops_operator.runtime.serve_drift import WindowSnapshot
from mlops_operator.runtime.serve_errors import InferenceError, ModelNotReady
from mlops_operator.runtime.serve_fault import Fault
from mlops_operator.runtime.serve_protocol import OUTPUT_NAME, encode_v1, encode_v2, v1_matrix, v1_request_id, v2_matrix
from mlops_operator.runtime.serve_runtime import ModelRuntime
from mlops_operator.runtime.serve_unpickle import unpickle_estimator
from mlops_operator.runtime.serve_v2 import Request, Response, datatype_of

log = logging.getLogger("mlops_operator.serve")

MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.json"
METRICS_FILE = "metrics.json"


@dataclass
class LoadedArtifact:
    estimator: Any             # None when only the compiled form was loaded (`load_estimator` fetches it)
    reference: dict | None
    onnx: bytes | None = None  # the verified compiled form, when the version has one and it may be used
    compiled_note: str = ""    # why it is (not) used
    feature_set: str | None = None  # the FeatureSet it was trained on (metrics.json lineage), when asked for
    load_estimator: Callable[[], Any] | None = None


@dataclass
class ArtifactSource:
    """Where the model version lives, and the sha256 the registry recorded for it, if the operator pinned one.

    The pin may be either the registry's `status.artifact.sha256` (the sha256 of `manifest.json`, which pins
    every file) or the sha256 of `model.joblib` itself; both make a swapped manifest + artifact pair fail.
    """

    store: ArtifactStore
    prefix: str
    expected_sha256: str | None = None
    compiled_model: str = "auto"  # ModelDeployment serving.compiledModel
    lineage: bool = False  # read the FeatureSet it was trained on (entity serving needs it)

    def fetch(self, defer_estimator: bool = False) -> LoadedArtifact:
        """Blocking: read the manifest, fetch + verify the files, unpickle. Raises StorageError subclasses.

        `defer_estimator`: when the compiled form will be used, leave `model.joblib` for `load_estimator`."""
        manifest = self.store.read_manifest(self.prefix)
        entry = manifest["files"].get(MODEL_FILE)
        if entry is None:
            raise IntegrityError(f"{MODEL_FILE} is not listed in the manifest at {self.prefix}")
        if self.expected_sha256:
            pinned = self.expected_sha256.lower()
            if pinned not in (sha256_hex(encode_manifest(manifest)), entry["sha256"]):
                raise IntegrityError(f"{self.prefix}: neither the manifest nor {MODEL_FILE} has the registry's sha256 {pinned}")
        reference = None
        if REFERENCE_FILE in manifest["files"]:
            reference = json.loads(self.store.fetch_verified(self.prefix, REFERENCE_FILE, manifest))
        report = None
        wants_report = self.lineage or (self.compiled_model != "off" and ONNX_FILE in manifest["files"])
        if wants_report and METRICS_FILE in manifest["files"]:
            report = json.loads(self.store.fetch_verified(self.prefix, METRICS_FILE, manifest))
        use, note = compiled_allowed(self.compiled_model, report, manifest)
        onnx = self.store.fetch_verified(self.prefix, ONNX_FILE, manifest) if use else None

        def load_estimator() -> Any:
            # Unpickling is only ever done on bytes whose sha256 matched: that is what makes joblib acceptable.
            return unpickle_estimator(self.store.fetch_verified(self.prefix, MODEL_FILE, manifest))

        estimator = None if use and defer_estimator else load_estimator()
        return LoadedArtifact(estimator, reference, onnx, note, trained_on(report), load_estimator)


def trained_on(report: Any) -> str | None:
    """The FeatureSet name in a version's metrics.json lineage (``data.featureSet.name``), if any."""
    data = report.get("data") if isinstance(report, dict) else None
    ref = data.get("featureSet") if isinstance(data, dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


class SklearnModel:
    """A scikit-learn estimator (or its compiled form) behind the server. Inject `runtime` to skip S3 (unit tests)."""

    def __init__(
        self,
        name: str,
        version: str = "",
        runtime: ModelRuntime | None = None,
        source: ArtifactSource | None = None,
        fault: Fault | None = None,
        window_rows: int = 2048,
        reference: dict | None = None,
        threads: int = 1,
    ):
        self.name = name
        self.version = version
        self.runtime = runtime
        self.source = source
        self.fault = fault or Fault()
        self.window_rows = window_rows
        self.reference = reference
        self.threads = threads  # intra-op threads of the compiled form (the pod's CPU limit)
        self.ready = runtime is not None
        self.not_ready_reason = "" if self.ready else "the model artifact is not loaded yet"
        self.feature_set: str | None = None  # the FeatureSet it was trained on (entity serving)

    def load(self) -> bool:
        """Fetch and verify the artifact; on any failure stay not Ready, record why, and re-raise."""
        if self.source is None:
            raise RuntimeError("no artifact source configured")
        try:
            loaded = self.source.fetch(defer_estimator=True)
            reference = loaded.reference
            names = list(reference["features"]) if reference and isinstance(reference.get("features"), dict) else None
            compiled = load_compiled(loaded.onnx, loaded.estimator, self.threads)
            estimator = loaded.estimator
            if estimator is None and (compiled is None or compiled.schema is None):
                # A compiled form without its schema (trained before it was recorded) or one that does not run:
                # the estimator is loaded now and answers beside it (or alone), as it always did.
                estimator = loaded.load_estimator()
                compiled = load_compiled(loaded.onnx, estimator, self.threads) if compiled is not None else None
            runtime = ModelRuntime(estimator, feature_names=names, window_rows=self.window_rows,
                                   compiled=compiled, load_estimator=loaded.load_estimator)
        except Exception as exc:
            self.ready = False
            self.not_ready_reason = f"{type(exc).__name__}: {exc}"
            raise
        self.runtime, self.reference, self.feature_set = runtime, reference, loaded.feature_set
        if runtime.compiled is not None:
            log.info("serving the compiled form (%s, %s inputs, %d intra-op threads%s): %s", ONNX_FILE,
                     runtime.compiled.dtype.__name__, runtime.compiled.threads,
                     "" if runtime.estimator is not None else "; scikit-learn loads on the first missing value",
                     loaded.compiled_note)
        else:
            log.info("serving with scikit-learn: %s", loaded.compiled_note or "no compiled form")
        self.not_ready_reason = ""
        self.ready = True
        return self.ready

    async def predict(self, payload: dict | Request, headers: dict[str, str] | None = None) -> dict | Response:
        return (await self.infer(payload))[0]

    async def infer(self, payload: dict | Request) -> tuple[dict | Response, np.ndarray]:
        """The protocol answer and the raw predictions behind it (what label feedback is scored against)."""
        if self.fault.active:
            self._runtime()
            await self.misbehave()
        return self.infer_now(payload)

    def infer_now(self, payload: dict | Request, max_abs: float = math.inf) -> tuple[dict | Response, np.ndarray]:
        """`infer` without the fault hook, callable from a worker thread; feature values beyond `max_abs` are
        refused before the model sees them."""
        runtime = self._runtime()
        if isinstance(payload, Request):
            y = runtime.predict(v2_matrix(payload, runtime.schema, max_abs))
            return encode_v2(payload, y, self.name, self.version), y
        y = runtime.predict(v1_matrix(payload, runtime.schema, max_abs))
        return encode_v1(y, v1_request_id(payload)), y

    def feature_names(self) -> list[str] | None:
        """The model's feature names in column order, once loaded (None when it has none)."""
        return self._runtime().schema.names

    def _runtime(self) -> ModelRuntime:
        runtime = self.runtime
        if runtime is None or not self.ready:
            raise ModelNotReady(self.name, self.not_ready_reason)
        return runtime

    async def misbehave(self) -> None:
        """`MLOPS_FAULT` (rollback tests only, see serve_fault): add latency and/or fail like a broken model."""
        if self.fault.delay_seconds:
            await asyncio.sleep(self.fault.delay_seconds)
        if self.fault.should_fail():
            raise InferenceError(f"injected fault (MLOPS_FAULT={self.fault.spec}): this version is deliberately broken")

    def get_input_types(self) -> list[dict]:
        n = self.runtime.schema.n_features if self.runtime else -1
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, n]}]

    def get_output_types(self) -> list[dict]:
        dtype = self.runtime.output_dtype if self.runtime else np.dtype(np.float64)
        return [{"name": OUTPUT_NAME, "datatype": datatype_of(dtype), "shape": [-1]}]

    def metadata(self) -> dict:
        """V2 model metadata (kserve's ModelMetadataResponse shape)."""
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": PLATFORM if self.runtime is not None and self.runtime.compiled is not None else "sklearn",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
        }

    def window_snapshot(self) -> WindowSnapshot | None:
        """A copy of the recent traffic to compute statistics from (off the event loop); None until loaded."""
        runtime = self.runtime
        if runtime is None:
            return None
        rows, predictions = runtime.window.snapshot()
        names = runtime.schema.names or [f"x{j}" for j in range(runtime.schema.n_features)]
        return WindowSnapshot(rows, predictions, names, self.reference)
