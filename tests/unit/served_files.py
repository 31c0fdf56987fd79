"""A model version's files held in memory, behind the two reads the model server makes of its store."""

from __future__ import annotations

import io
import json
from collections import Counter


class MemoryVersion:
    """`read_manifest` and `fetch_verified` of `ArtifactStore` over a dict of files; counts every fetch."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.fetched: Counter[str] = Counter()

    def read_manifest(self, prefix: str) -> dict:
        return {"files": {name: {"sha256": "0" * 64} for name in self.files}}

    def fetch_verified(self, prefix: str, name: str, manifest: dict | None = None) -> bytes:
        self.fetched[name] += 1
        return self.files[name]


def version_files(estimator, compiled=None) -> dict[str, bytes]:
    """model.joblib, and with a compiled form model.onnx plus the metrics.json that records it."""
    import joblib  # here: a server probe imports this module and must not load joblib through it

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    files = {"model.joblib": buffer.getvalue()}
    if compiled is not None:
        files["model.onnx"] = compiled.onnx
        files["metrics.json"] = json.dumps({"compiled": compiled.report}).encode()
    return files
