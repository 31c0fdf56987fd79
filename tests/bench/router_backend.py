"""Subprocess entry point: the real `mlops-serve` app, reading its artifact from a local directory instead of S3.

    MLOPS_MODEL=... MLOPS_ARTIFACT_PREFIX=s3://bench/models/<m>/<v>/ [MLOPS_FAULT=...] \
        python -m tests.bench.router_backend ROOT

Everything but the storage transport is `mlops_operator.runtime.serve` as deployed (settings from the
environment, manifest + sha256 verification, `MLOPS_FAULT`, metrics): the router benchmark then needs no
MinIO, and S3 latency could not leak into it anyway (the artifact is read once, before readiness).
`write_version` lays out ROOT/<bucket>/<key> exactly as `ArtifactStore.write_version` does in S3.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from mlops_operator.providers.storage import (
    MANIFEST_NAME, ArtifactStore, ObjectNotFound, S3Uri, build_manifest, encode_manifest,
)

BUCKET = "bench"


class DirStore(ArtifactStore):
    """`ArtifactStore` whose objects are files under `root/<bucket>/<key>` (only the read path is used)."""

    def __init__(self, root: Path):
        super().__init__(client=None, default_bucket=BUCKET, endpoint=f"file://{root}")
        self.root = root

    def _get(self, loc: S3Uri) -> bytes:
        path = self.root / loc.bucket / loc.key
        if not path.is_file():
            raise ObjectNotFound(f"{loc} not found under {self.root}")
        return path.read_bytes()


def write_version(root: Path, model: str, version: str, files: dict[str, bytes]) -> str:
    """Write files, then the manifest (the commit marker) under root; returns the s3:// prefix to serve."""
    directory = root / BUCKET / "models" / model / version
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / MANIFEST_NAME).write_bytes(encode_manifest(build_manifest(files, datetime.now(UTC))))
    return f"s3://{BUCKET}/models/{model}/{version}/"


def main(root: str) -> None:
    from prometheus_client import disable_created_metrics

    from mlops_operator.runtime.serve import ServeSettings, build_app
    from mlops_operator.runtime.serve_asgi import serve

    settings = ServeSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_created_metrics()
    serve(build_app(settings, store=DirStore(Path(root))), settings.host, settings.port)


if __name__ == "__main__":
    main(sys.argv[1])
