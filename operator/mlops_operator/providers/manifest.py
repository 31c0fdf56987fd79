"""The commit record of a stored version: ``manifest.json`` (pure: no I/O).

A manifest pins every file of a version (sha256 + size), names the ATTEMPT directory the files were written
under, the OWNER that wrote it (namespace, kind, name; the uid for audit only, since an object re-applied
from git gets a new one) and the hash of the spec that produced it. Format 2; format 1 (files at the
prefix itself, no owner) is still read, so versions committed before the upgrade keep verifying.

Why an attempt directory: S3 has no multi-object transaction. Every writer puts its files under a key
nobody else uses (``<prefix><attempt>/<file>``) and then commits with ONE conditional put of the manifest.
Two racing writers never touch each other's bytes, the loser's commit is refused (412), and nothing after
the commit point can change a byte that the manifest names.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Mapping

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
# A file name inside a version: one path segment, no traversal, nothing the manifest itself is called.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_ATTEMPT = re.compile(r"^a-[0-9a-f]{16}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
OWNER_KEYS = ("namespace", "kind", "name")


class StorageError(Exception):
    """Base of every storage failure; callers that do not care which one catch this."""


class IntegrityError(StorageError):
    """The bytes are not the committed ones: sha256/size mismatch, or no (valid) manifest at all."""


def check_file_name(name: str) -> str:
    """A version's file names are single safe segments (they become manifest keys and object keys)."""
    if not _FILE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"invalid artifact file name {name!r}")
    return name


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_attempt() -> str:
    """A fresh attempt directory name: 64 random bits, so two writers never pick the same one."""
    return f"a-{secrets.token_hex(8)}"


def object_name(manifest: Mapping[str, Any], name: str) -> str:
    """Where ``name`` of this version lives, relative to the version prefix."""
    attempt = manifest.get("attempt")
    return f"{attempt}/{name}" if attempt else name


def manifest_from_entries(entries: Mapping[str, Mapping[str, Any]], created_at: datetime, *,
                          attempt: str | None = None, owner: Mapping[str, Any] | None = None,
                          spec_hash: str | None = None) -> dict[str, Any]:
    """The manifest of files already hashed: ``entries`` maps each name to ``{sha256, size}``.

    Format 2 when it names an attempt directory, an owner or a spec hash; format 1 (flat) otherwise."""
    if not entries:
        raise ValueError("a version needs at least one file")
    if MANIFEST_NAME in entries:
        raise ValueError(f"{MANIFEST_NAME} is written by the store, not passed in")
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION if (attempt or owner or spec_hash) else 1,
        "files": {check_file_name(n): {"sha256": str(e["sha256"]), "size": int(e["size"])}
                  for n, e in sorted(entries.items())},
        "createdAt": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if attempt is not None:
        doc["attempt"] = attempt
    if owner:
        doc["owner"] = {k: str(v) for k, v in owner.items() if k in (*OWNER_KEYS, "uid") and v}
    if spec_hash:
        doc["specHash"] = spec_hash
    return doc


def build_manifest(files: Mapping[str, bytes], created_at: datetime, **kwargs: Any) -> dict[str, Any]:
    """The manifest of in-memory files (hashes them); keywords as ``manifest_from_entries``."""
    return manifest_from_entries({n: {"sha256": sha256_hex(d), "size": len(d)} for n, d in files.items()},
                          created_at, **kwargs)


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Deterministic bytes, so the manifest's own sha256 can pin a whole version."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def decode_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """Parse and validate a manifest; anything malformed is an integrity failure, not a crash."""
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"manifest at {where} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("version") not in READABLE_VERSIONS:
        raise IntegrityError(f"manifest at {where} has an unsupported format/version")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"manifest at {where} lists no files")
    for name, entry in files.items():
        ok = (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
              and _SHA256.match(entry["sha256"]) is not None
              and isinstance(entry.get("size"), int) and not isinstance(entry.get("size"), bool)
              and entry["size"] >= 0)
        if not ok or not _FILE_NAME.match(name) or name == MANIFEST_NAME:
            raise IntegrityError(f"manifest at {where} has an invalid entry for {name!r}")
    attempt = manifest.get("attempt")
    if attempt is not None and (not isinstance(attempt, str) or not _ATTEMPT.match(attempt)):
        raise IntegrityError(f"manifest at {where} names an invalid attempt directory {attempt!r}")
    owner = manifest.get("owner")
    if owner is not None and (not isinstance(owner, dict) or not all(isinstance(v, str) for v in owner.values())):
        raise IntegrityError(f"manifest at {where} has an invalid owner")
    return manifest


def owner_of(manifest: Mapping[str, Any]) -> dict[str, str] | None:
    """The (namespace, kind, name) that committed the version, or None (format 1 or foreign upload)."""
    owner = manifest.get("owner") or {}
    if not all(owner.get(k) for k in OWNER_KEYS):
        return None
    return {k: owner[k] for k in OWNER_KEYS}


def same_owner(manifest: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether ``owner`` (namespace, kind, name) is the one the manifest names (the uid is not compared)."""
    found = owner_of(manifest)
    return found is not None and all(found[k] == str(owner.get(k) or "") for k in OWNER_KEYS)


def verify_bytes(manifest: Mapping[str, Any], name: str, data: bytes, where: str) -> bytes:
    """Return ``data`` only if it is exactly what the manifest committed for ``name``."""
    check_digest(manifest, name, len(data), sha256_hex(data), where)
    return data


def check_digest(manifest: Mapping[str, Any], name: str, size: int, digest: str, where: str) -> None:
    """Raise IntegrityError unless (size, sha256) are the committed ones for ``name``."""
    entry = manifest["files"].get(name)
    if entry is None:
        raise IntegrityError(f"{name!r} is not listed in the manifest at {where}")
    if size != entry["size"]:
        raise IntegrityError(f"{where}{name}: size {size} != manifest size {entry['size']}")
    if digest != entry["sha256"]:
        raise IntegrityError(f"{where}{name}: sha256 {digest} != manifest sha256 {entry['sha256']}")


def spec_hash(doc: Any) -> str:
    """sha256 of a spec fragment as canonical JSON: the identity of what a version was built from."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
