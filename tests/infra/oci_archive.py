"""Packs one static binary into an OCI image archive that `ctr images import` accepts.

Used for the pause (sandbox) image, which is a single static binary: no base image, no builder needed.
Usage: python3 oci_archive.py BINARY IMAGE_REF OUT.tar [ENTRYPOINT_PATH]
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def main(binary: str, ref: str, out: str, entry: str = "/pause") -> None:
    payload = open(binary, "rb").read()
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as lt:
        info = tarfile.TarInfo(entry.lstrip("/"))
        info.size, info.mode = len(payload), 0o755
        lt.addfile(info, io.BytesIO(payload))
    raw = layer_tar.getvalue()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = gzip.compress(raw, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [entry], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(out, "w") as tar:
        layer_digest, layer_size = _blob(tar, layer)
        cfg_digest, cfg_size = _blob(tar, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
        }
        man_digest, man_size = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest, "size": man_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref},
            }],
        }
        for name, doc in (("index.json", index), ("oci-layout", {"imageLayoutVersion": "1.0.0"})):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main(*sys.argv[1:])
