"""Subprocess entry point serving one joblib model: `ours` (ServeApp on uvicorn) or stock `kserve` ModelServer.

    python -m tests.bench.server_targets ours|ours-compiled|kserve MODEL_FILE NAME PORT

`kserve` wraps the estimator in a minimal `kserve.Model` (the stock-kserve peer of docs/benchmarks.md);
`ours-compiled` is `ours` running
the compiled form next to MODEL_FILE (`<name>.onnx`) with one intra-op thread. Loopback only.
"""

from __future__ import annotations

import sys
import uuid
import warnings

import joblib
import numpy as np


def minimal_kserve_model(name: str, estimator):
    from kserve import Model
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class Minimal(Model):
        """The smallest honest kserve model: V2 tensor in, predictions out; V1 instances in, predictions out."""

        def __init__(self):
            super().__init__(name)
            self.ready = True

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):
                y = estimator.predict(payload.inputs[0].as_numpy())
                out = InferOutput(name="output-0", shape=list(y.shape), datatype="INT64", data=y.astype(np.int64).tolist())
                return InferResponse(model_name=name, infer_outputs=[out], response_id=payload.id or str(uuid.uuid4()))
            return {"predictions": estimator.predict(np.asarray(payload["instances"], dtype=float)).tolist()}

    return Minimal()


def main(kind: str, model_file: str, name: str, port: int) -> None:
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    if kind in ("ours", "ours-compiled"):
        from pathlib import Path

        from mlops_operator.runtime.serve_app import ServeApp
        from mlops_operator.runtime.serve_asgi import serve
        from mlops_operator.runtime.serve_compiled import load_compiled
        from mlops_operator.runtime.serve_limits import LimitSettings
        from mlops_operator.runtime.serve_metrics import ServeMetrics
        from mlops_operator.runtime.serve_model import SklearnModel
        from mlops_operator.runtime.serve_runtime import ModelRuntime
        from mlops_operator.runtime.serve_unpickle import unpickle_estimator

        if kind == "ours-compiled":  # as mlops-serve loads a compiled version: the estimator only if asked for
            compiled = load_compiled(Path(model_file).with_suffix(".onnx").read_bytes(), None, 1)
            if compiled is None or compiled.schema is None:
                raise SystemExit(f"{model_file}: the compiled form does not load, or carries no schema")
            runtime = ModelRuntime(None, compiled=compiled,
                                   load_estimator=lambda: unpickle_estimator(Path(model_file).read_bytes()))
        else:  # as mlops-serve unpickles a version it has verified
            runtime = ModelRuntime(unpickle_estimator(Path(model_file).read_bytes()))
        metrics = ServeMetrics(name, "v1", "stable")
        metrics.ready.set(1)
        app = ServeApp(SklearnModel(name, "v1", runtime=runtime), metrics, limits=LimitSettings().limits())
        serve(app, "127.0.0.1", port)  # MLOPS_LIMIT_* as in a pod
        return
    estimator = joblib.load(model_file)
    import kserve

    # ModelServer binds all interfaces by default; the benchmark only ever talks to 127.0.0.1.
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([minimal_kserve_model(name, estimator)])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
