"""S3 artifact storage: versions are written file by file, then committed by ``manifest.json``.

Why a manifest: S3 has no multi-object transaction. Writing every file first and the manifest (sha256 +
size of each file) LAST makes the manifest the commit marker: a prefix without one is an interrupted or
failed upload and is never loaded; a file whose bytes do not hash to the manifest entry is corrupt and is
never returned. The manifest is written with ``If-None-Match: *`` so two writers can never both commit
the same version, and an existing version is never overwritten.

Works against MinIO (development) and AWS. botocore >= 1.36 adds CRC checksums to every request by
default, which several S3-compatible servers reject or mishandle; the client here asks for checksums only
when an operation requires them. Credentials are never logged nor put into exception messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Iterator, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from mlops_operator.settings import S3Settings, s3_settings

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CHUNK = 1024 * 1024
# A file name inside a version: one path segment, no traversal, nothing the manifest itself is called.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# S3 bucket naming rules (lower-case DNS label style); anything else is a typo or an injection attempt.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageError(Exception):
    """Base of every storage failure; callers that do not care which one catch this."""


class IntegrityError(StorageError):
    """The bytes are not the committed ones: sha256/size mismatch, or no (valid) manifest at all."""


class AlreadyExistsError(StorageError):
    """A manifest is already present: versions are immutable, overwriting is refused."""


class StorageUnavailable(StorageError):
    """The endpoint cannot be reached (down, refused, timed out). Retrying later may succeed."""


class AccessDenied(StorageError):
    """The credentials are wrong, rotated or lack permission. Retrying without a fix will not help."""


class ObjectNotFound(StorageError):
    """A plain object (e.g. a user's dataset) or the bucket does not exist."""


# --------------------------------------------------------------------------------------------- URIs


@dataclass(frozen=True)
class S3Uri:
    """A parsed ``s3://bucket/key`` location. ``key`` has no leading slash; a prefix ends with ``/``."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_prefix(self) -> "S3Uri":
        """The same location as a "directory" (trailing slash), so joined names never glue together."""
        return self if not self.key or self.key.endswith("/") else S3Uri(self.bucket, self.key + "/")

    def join(self, name: str) -> "S3Uri":
        return S3Uri(self.bucket, self.as_prefix().key + check_file_name(name))


def parse_s3_uri(uri: str) -> S3Uri:
    """Parse and validate ``s3://bucket/key``.

    Rejects other schemes, an empty or malformed bucket, and any ``.``/``..`` segment: keys are
    plain strings to S3, but a ``..`` in a spec is always either a mistake or an attempt to reach
    another model's artifacts, so it never gets as far as a request.

    >>> parse_s3_uri("s3://mlops/models/bc/bc-v1/")
    S3Uri(bucket='mlops', key='models/bc/bc-v1/')
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has an empty bucket: {uri!r}")
    if not _BUCKET.match(bucket):
        raise ValueError(f"invalid bucket name {bucket!r} in {uri!r}")
    _check_key(key, uri)
    return S3Uri(bucket, key)


def _check_key(key: str, shown: str) -> None:
    if "\\" in key or "\x00" in key:
        raise ValueError(f"invalid character in s3 key: {shown!r}")
    if key.startswith("/"):
        raise ValueError(f"s3 key must not start with '/': {shown!r}")
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        raise ValueError(f"path traversal ('.' or '..' segment) in s3 location: {shown!r}")
    if "" in segments[:-1]:
        raise ValueError(f"empty path segment ('//') in s3 location: {shown!r}")


def check_file_name(name: str) -> str:
    """A version's file names are single safe segments (they become manifest keys and object keys)."""
    if not _FILE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"invalid artifact file name {name!r}")
    return name


# ----------------------------------------------------------------------------------------- manifest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_manifest(files: Mapping[str, bytes], created_at: datetime) -> dict[str, Any]:
    """The commit record of a version: sha256 and size of every file, and when it was committed."""
    if not files:
        raise ValueError("a version needs at least one file")
    if MANIFEST_NAME in files:
        raise ValueError(f"{MANIFEST_NAME} is written by the store, not passed in")
    entries = {
        check_file_name(name): {"sha256": sha256_hex(data), "size": len(data)}
        for name, data in sorted(files.items())
    }
    stamp = created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"version": MANIFEST_VERSION, "files": entries, "createdAt": stamp}


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Deterministic bytes, so the manifest's own sha256 can pin a whole version."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def decode_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """Parse and validate a manifest; anything malformed is an integrity failure, not a crash."""
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"manifest at {where} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise IntegrityError(f"manifest at {where} has an unsupported format/version")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"manifest at {where} lists no files")
    for name, entry in files.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
            and isinstance(entry.get("size"), int)
            and entry["size"] >= 0
        )
        if not ok or not _FILE_NAME.match(name):
            raise IntegrityError(f"manifest at {where} has an invalid entry for {name!r}")
    return manifest


def verify_bytes(manifest: Mapping[str, Any], name: str, data: bytes, where: str) -> bytes:
    """Return ``data`` only if it is exactly what the manifest committed for ``name``."""
    entry = manifest["files"].get(name)
    if entry is None:
        raise IntegrityError(f"{name!r} is not listed in the manifest at {where}")
    if len(data) != entry["size"]:
        raise IntegrityError(f"{where}{name}: size {len(data)} != manifest size {entry['size']}")
    digest = sha256_hex(data)
    if digest != entry["sha256"]:
        raise IntegrityError(f"{where}{name}: sha256 {digest} != manifest sha256 {entry['sha256']}")
    return data


# ------------------------------------------------------------------------------------------- client


def client_config(connect_timeout: float = 5.0, read_timeout: float = 30.0, max_attempts: int = 3) -> Config:
    """botocore settings that work against MinIO and AWS alike (see module docstring)."""
    return Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def make_s3_client(settings: S3Settings | None = None, config: Config | None = None) -> Any:
    settings = settings or s3_settings()
    key = settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None
    secret = settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=settings.aws_region,
        config=config or client_config(),
    )


_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                 "ExpiredToken", "AllAccessDisabled", "403", "Forbidden"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_EXISTS_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


# ---------------------------------------------------------------------------------------- the store


class ArtifactStore:
    """Immutable, verified versions under S3 prefixes. Prefixes are ``s3://`` URIs or bucket-relative keys."""

    def __init__(self, client: Any, default_bucket: str, endpoint: str | None = None) -> None:
        self._client = client
        self.default_bucket = default_bucket
        self.endpoint = endpoint or getattr(getattr(client, "meta", None), "endpoint_url", None) or "AWS S3"

    @classmethod
    def from_settings(cls, settings: S3Settings | None = None, config: Config | None = None) -> "ArtifactStore":
        settings = settings or s3_settings()
        return cls(make_s3_client(settings, config), settings.s3_bucket, settings.s3_endpoint_url)

    def __repr__(self) -> str:  # never the credentials
        return f"ArtifactStore(endpoint={self.endpoint!r}, bucket={self.default_bucket!r})"

    def location(self, prefix: str | S3Uri) -> S3Uri:
        """Resolve a prefix (URI or key in the default bucket) to a validated directory location."""
        if isinstance(prefix, S3Uri):
            loc = prefix
        elif prefix.startswith("s3://"):
            loc = parse_s3_uri(prefix)
        elif "://" in prefix:
            raise ValueError(f"not an s3:// URI: {prefix!r}")
        else:
            _check_key(prefix, prefix)
            loc = S3Uri(self.default_bucket, prefix)
        if not loc.key:
            raise ValueError(f"a version prefix needs a key below the bucket: {prefix!r}")
        return loc.as_prefix()

    @contextmanager
    def _translated(self, action: str, where: S3Uri | str) -> Iterator[None]:
        """Map botocore's many exceptions onto the four outcomes callers act on differently."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"S3 endpoint {self.endpoint} unreachable while trying to {action} {where}: "
                                     f"{type(exc).__name__}") from exc
        except NoCredentialsError as exc:
            raise AccessDenied(f"no S3 credentials configured to {action} {where} at {self.endpoint}") from exc
        except ClientError as exc:
            code = _error_code(exc)
            if code in _DENIED_CODES:
                raise AccessDenied(f"access denied by {self.endpoint} to {action} {where} ({code}); "
                                   "check the S3 credentials") from exc
            if code in _EXISTS_CODES:
                raise AlreadyExistsError(f"{where} already exists; versions are immutable") from exc
            if code in _MISSING_CODES:
                raise ObjectNotFound(f"{where} not found at {self.endpoint} ({code})") from exc
            if code.startswith("5") or code in {"ServiceUnavailable", "SlowDown", "InternalError"}:
                raise StorageUnavailable(f"S3 endpoint {self.endpoint} failed to {action} {where} ({code})") from exc
            raise StorageError(f"S3 error trying to {action} {where} at {self.endpoint}: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 endpoint {self.endpoint} failed to {action} {where}: "
                                     f"{type(exc).__name__}") from exc

    # -- plain objects ----------------------------------------------------------------------------

    def _get(self, loc: S3Uri) -> bytes:
        with self._translated("read", loc):
            body = self._client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
            try:
                return b"".join(body.iter_chunks(_CHUNK))
            finally:
                body.close()

    def _put(self, loc: S3Uri, data: bytes, *, if_none_match: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        with self._translated("write", loc):
            self._client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **extra)

    def read_object(self, uri: str | S3Uri) -> bytes:
        """An UNVERIFIED object, e.g. a user's dataset file. Model artifacts go through fetch_verified."""
        loc = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
        if not loc.key or loc.key.endswith("/"):
            raise ValueError(f"{loc} names a prefix, not an object")
        return self._get(loc)

    def put_object(self, uri: str | S3Uri, data: bytes) -> None:
        """Write one plain object (test fixtures, datasets). Versions go through write_version."""
        loc = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
        self._put(loc, data)

    # -- versions ---------------------------------------------------------------------------------

    def has_manifest(self, prefix: str | S3Uri) -> bool:
        """Whether the version at ``prefix`` is committed (cheap HEAD, no download)."""
        loc = self.location(prefix).join(MANIFEST_NAME)
        try:
            with self._translated("check", loc):
                self._client.head_object(Bucket=loc.bucket, Key=loc.key)
        except ObjectNotFound:
            return False
        return True

    def write_version(self, prefix: str | S3Uri, files: Mapping[str, bytes],
                      now: datetime | None = None) -> dict[str, Any]:
        """Upload ``files`` then commit them with ``manifest.json``; return the manifest.

        Refuses (``AlreadyExistsError``) if the version is already committed, both up front and
        atomically at commit time. Files left by an earlier, uncommitted attempt are overwritten:
        they were never part of a version.
        """
        loc = self.location(prefix)
        manifest = build_manifest(files, now or datetime.now(UTC))
        if self.has_manifest(loc):
            raise AlreadyExistsError(f"{loc} already has a {MANIFEST_NAME}; versions are immutable")
        for name, data in sorted(files.items()):
            self._put(loc.join(name), data)
            log.info("uploaded %s (%d bytes)", loc.join(name), len(data))
        self._put(loc.join(MANIFEST_NAME), encode_manifest(manifest), if_none_match=True)
        log.info("committed %s (%d files)", loc.join(MANIFEST_NAME), len(files))
        return manifest

    def read_manifest(self, prefix: str | S3Uri) -> dict[str, Any]:
        """The committed manifest; a missing one means "no such version" and is an IntegrityError."""
        loc = self.location(prefix)
        try:
            raw = self._get(loc.join(MANIFEST_NAME))
        except ObjectNotFound as exc:
            raise IntegrityError(f"no {MANIFEST_NAME} at {loc}: the version is absent or its upload "
                                 "never completed") from exc
        return decode_manifest(raw, str(loc))

    def fetch_verified(self, prefix: str | S3Uri, name: str,
                       manifest: Mapping[str, Any] | None = None) -> bytes:
        """One file's bytes, returned only if their sha256 and size match the manifest."""
        loc = self.location(prefix)
        manifest = manifest if manifest is not None else self.read_manifest(loc)
        if name not in manifest["files"]:
            raise IntegrityError(f"{name!r} is not listed in the manifest at {loc}")
        try:
            data = self._get(loc.join(name))
        except ObjectNotFound as exc:
            raise IntegrityError(f"{loc.join(name)} is listed in the manifest but missing") from exc
        return verify_bytes(manifest, name, data, str(loc))

    def verify_prefix(self, prefix: str | S3Uri) -> dict[str, Any]:
        """Re-hash every committed file; return the manifest if all match, else raise IntegrityError."""
        loc = self.location(prefix)
        manifest = self.read_manifest(loc)
        for name in sorted(manifest["files"]):
            self.fetch_verified(loc, name, manifest)
        return manifest


def version_prefix(bucket: str, model: str, model_version: str) -> str:
    """``s3://<bucket>/models/<model>/<modelversion>/`` — the layout in DESIGN.md."""
    for part in (model, model_version):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid model or version name {part!r}")
    return str(S3Uri(bucket, posixpath.join("models", model, model_version) + "/"))
