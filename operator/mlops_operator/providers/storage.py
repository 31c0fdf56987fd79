"""S3 artifact storage: versions are written under a private attempt directory, then committed by
``manifest.json`` (format and rules in ``providers.manifest``).

A prefix without a manifest is an interrupted or failed upload and is never loaded; a file whose bytes do
not hash to the manifest entry is corrupt and is never returned. The manifest is written with
``If-None-Match: *`` so two writers can never both commit the same version, and because each writer's
files live under its own attempt directory, the loser of a race never changes a byte of the winner's.
Verification streams (hash while reading): the operator checks a version larger than its own memory.

Works against MinIO (development) and AWS. botocore >= 1.36 adds CRC checksums to every request by
default, which several S3-compatible servers reject or mishandle; the client here asks for checksums only
when an operation requires them. Credentials are never logged nor put into exception messages.
"""

from __future__ import annotations

import hashlib
import logging
import os
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

from mlops_operator.providers.manifest import (  # noqa: F401  (re-exported: the store's vocabulary)
    MANIFEST_NAME,
    IntegrityError,
    StorageError,
    build_manifest,
    check_digest,
    manifest_from_entries,
    check_file_name,
    decode_manifest,
    encode_manifest,
    new_attempt,
    object_name,
    same_owner,
    sha256_hex,
    verify_bytes,
)
from mlops_operator.settings import S3Settings, s3_settings

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# S3 bucket naming rules (lower-case DNS label style); anything else is a typo or an injection attempt.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "XAdminUserNotFound",
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
        chunks: list[bytes] = []
        self._stream(loc, chunks.append)
        return b"".join(chunks)

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

    def write_version(self, prefix: str | S3Uri, files: Mapping[str, bytes], now: datetime | None = None, *,
                      owner: Mapping[str, Any] | None = None, spec_hash: str | None = None) -> dict[str, Any]:
        """Upload ``files`` under a new attempt directory, then commit them with ``manifest.json``.

        ``owner`` (namespace, kind, name, uid) and ``spec_hash`` are recorded in the manifest. Refuses
        (``AlreadyExistsError``) if the version is already committed, up front and atomically at commit
        time; the loser of a race removes its own attempt directory and leaves the winner's bytes alone.
        """
        writer = self.begin_version(prefix)
        for name, data in sorted(files.items()):
            writer.add(name, data)
        return writer.commit(now or datetime.now(UTC), owner=owner, spec_hash=spec_hash)

    def begin_version(self, prefix: str | S3Uri) -> "VersionWriter":
        """A writer that uploads a version's files one by one (bounded memory), then commits them.

        Refuses (``AlreadyExistsError``) at once if the version is already committed; the commit re-checks."""
        loc = self.location(prefix)
        if self.has_manifest(loc):
            raise AlreadyExistsError(f"{loc} already has a {MANIFEST_NAME}; versions are immutable")
        return VersionWriter(self, loc)

    def download(self, uri: str | S3Uri, path: str) -> tuple[int, str]:
        """Stream an UNVERIFIED object (a user's dataset) into the file ``path``; (size, sha256)."""
        loc = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
        if not loc.key or loc.key.endswith("/"):
            raise ValueError(f"{loc} names a prefix, not an object")
        with open(path, "wb") as fh:
            return self._stream(loc, fh.write)

    def download_verified(self, prefix: str | S3Uri, name: str, manifest: Mapping[str, Any], path: str) -> None:
        """Stream the committed file ``name`` into ``path``; IntegrityError (and the file removed) on a mismatch."""
        loc = self.location(prefix)
        obj = self._object(loc, manifest, name)
        if name not in manifest["files"]:
            raise IntegrityError(f"{name!r} is not listed in the manifest at {loc}")
        try:
            with open(path, "wb") as fh:
                size, digest = self._stream(obj, fh.write)
            check_digest(manifest, name, size, digest, str(loc))
        except ObjectNotFound as exc:
            os.remove(path)
            raise IntegrityError(f"{obj} is listed in the manifest but missing") from exc
        except IntegrityError:
            os.remove(path)
            raise

    def commit(self, prefix: str | S3Uri, manifest: Mapping[str, Any]) -> None:
        """Put the manifest (the single commit step), only if none exists; on a lost race remove the
        attempt's own files and raise ``AlreadyExistsError``."""
        loc = self.location(prefix)
        try:
            self._put(loc.join(MANIFEST_NAME), encode_manifest(manifest), if_none_match=True)
        except AlreadyExistsError as exc:
            attempt = manifest.get("attempt")
            if attempt:
                self.delete_prefix(S3Uri(loc.bucket, f"{loc.key}{attempt}/"))
            raise AlreadyExistsError(f"{loc} was committed by another writer first; this attempt's files were "
                                     "removed and the committed version is unchanged") from exc
        log.info("committed %s (%d files)", loc.join(MANIFEST_NAME), len(manifest["files"]))

    def read_manifest(self, prefix: str | S3Uri) -> dict[str, Any]:
        """The committed manifest; a missing one means "no such version" and is an IntegrityError."""
        loc = self.location(prefix)
        try:
            raw = self._get(loc.join(MANIFEST_NAME))
        except ObjectNotFound as exc:
            raise IntegrityError(f"no {MANIFEST_NAME} at {loc}: the version is absent or its upload "
                                 "never completed") from exc
        return decode_manifest(raw, str(loc))

    def find_manifest(self, prefix: str | S3Uri) -> dict[str, Any] | None:
        """The committed manifest, or None when nothing is committed at ``prefix``."""
        try:
            return self.read_manifest(prefix)
        except IntegrityError:
            if self.has_manifest(prefix):
                raise
            return None

    def object_uri(self, prefix: str | S3Uri, name: str, manifest: Mapping[str, Any] | None = None) -> S3Uri:
        """Where the committed file ``name`` of the version at ``prefix`` is stored (its attempt directory)."""
        loc = self.location(prefix)
        return self._object(loc, manifest if manifest is not None else self.read_manifest(loc), name)

    @staticmethod
    def _object(loc: S3Uri, manifest: Mapping[str, Any], name: str) -> S3Uri:
        check_file_name(name)
        return S3Uri(loc.bucket, loc.key + object_name(manifest, name))

    def _stream(self, loc: S3Uri, sink: Any = None) -> tuple[int, str]:
        """Read ``loc`` in chunks, hashing as it goes; each chunk goes to ``sink`` (or is dropped)."""
        digest, size = hashlib.sha256(), 0
        with self._translated("read", loc):
            body = self._client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
            try:
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if sink is not None:
                        sink(chunk)
            finally:
                body.close()
        return size, digest.hexdigest()

    def _checked(self, loc: S3Uri, manifest: Mapping[str, Any], name: str, keep: bool,
                 max_bytes: int | None = None) -> bytes:
        """Stream one committed file and check it; its bytes when ``keep`` (refused past ``max_bytes``)."""
        where = str(loc)
        entry = manifest["files"].get(name)
        if entry is None:
            raise IntegrityError(f"{name!r} is not listed in the manifest at {where}")
        if keep and max_bytes is not None and entry["size"] > max_bytes:
            raise IntegrityError(f"{where}{name} is {entry['size']} bytes, more than the {max_bytes} allowed here")
        chunks: list[bytes] = []
        obj = self._object(loc, manifest, name)
        try:
            size, digest = self._stream(obj, chunks.append if keep else None)
        except ObjectNotFound as exc:
            raise IntegrityError(f"{obj} is listed in the manifest but missing") from exc
        check_digest(manifest, name, size, digest, where)
        return b"".join(chunks)

    def fetch_verified(self, prefix: str | S3Uri, name: str, manifest: Mapping[str, Any] | None = None, *,
                       max_bytes: int | None = None) -> bytes:
        """One file's bytes, returned only if their sha256 and size match the manifest."""
        loc = self.location(prefix)
        manifest = manifest if manifest is not None else self.read_manifest(loc)
        return self._checked(loc, manifest, name, keep=True, max_bytes=max_bytes)

    def verify_file(self, prefix: str | S3Uri, name: str, manifest: Mapping[str, Any]) -> None:
        """Check one committed file by streaming: never more than a chunk in memory, whatever its size."""
        self._checked(self.location(prefix), manifest, name, keep=False)

    def verify_prefix(self, prefix: str | S3Uri) -> dict[str, Any]:
        """Re-hash every committed file (streaming); return the manifest if all match, else IntegrityError."""
        loc = self.location(prefix)
        manifest = self.read_manifest(loc)
        for name in sorted(manifest["files"]):
            self.verify_file(loc, name, manifest)
        return manifest

    # -- deletion ---------------------------------------------------------------------------------

    def list_keys(self, prefix: str | S3Uri) -> list[str]:
        """Every object key under ``prefix`` (paginated)."""
        loc = self.location(prefix)
        keys: list[str] = []
        with self._translated("list", loc):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def delete_prefix(self, prefix: str | S3Uri, *, last: str | None = None) -> int:
        """Delete every object under ``prefix`` (``last``, a name directly under it, goes after the rest)."""
        loc = self.location(prefix)
        keys = self.list_keys(loc)
        final = f"{loc.key}{last}" if last else None
        rest = [k for k in keys if k != final]
        for start in range(0, len(rest), 1000):
            self._delete_keys(loc, rest[start:start + 1000])
        if final in keys:  # the commit marker goes alone, after everything it names
            self._delete_keys(loc, [final])
        return len(keys)

    def _delete_keys(self, loc: S3Uri, keys: list[str]) -> None:
        with self._translated("delete", loc):
            out = self._client.delete_objects(Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in keys],
                                                                         "Quiet": True})
        errors = out.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(f"deleting under {loc} failed for {len(errors)} object(s), e.g. {first.get('Key')}: "
                               f"{first.get('Code')}")

    def delete_version(self, prefix: str | S3Uri, owner: Mapping[str, Any]) -> int:
        """Delete the version at ``prefix`` if its manifest names ``owner`` (namespace, kind, name).

        The manifest is deleted last, so an interrupted deletion is retried with the owner still provable.
        A prefix with no manifest holds only uncommitted attempts and is emptied. Returns objects deleted.
        """
        loc = self.location(prefix)
        manifest = self.find_manifest(loc)
        if manifest is not None and not same_owner(manifest, owner):
            found = manifest.get("owner") or "no owner"
            raise OwnerMismatch(f"{loc} was committed by {found}, not by {dict(owner)}: not deleted")
        return self.delete_prefix(loc, last=MANIFEST_NAME)


class OwnerMismatch(StorageError):
    """The version at a prefix was committed by another object: it is not this object's to change."""


class VersionWriter:
    """One attempt at writing a version: files go under the attempt directory as they are added (each one
    hashed on the way), and ``commit`` writes the manifest of exactly those files with ``If-None-Match``."""

    def __init__(self, store: ArtifactStore, loc: S3Uri) -> None:
        self.store, self.loc, self.attempt = store, loc, new_attempt()
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, name: str, data: bytes) -> None:
        if name in self.entries or name == MANIFEST_NAME:
            raise ValueError(f"{name!r} is already part of this version")
        key = S3Uri(self.loc.bucket, f"{self.loc.key}{self.attempt}/{check_file_name(name)}")
        self.store._put(key, data)
        self.entries[name] = {"sha256": sha256_hex(data), "size": len(data)}
        log.info("uploaded %s (%d bytes)", key, len(data))

    def commit(self, now: datetime, *, owner: Mapping[str, Any] | None = None,
               spec_hash: str | None = None) -> dict[str, Any]:
        manifest = manifest_from_entries(self.entries, now, attempt=self.attempt, owner=owner, spec_hash=spec_hash)
        self.store.commit(self.loc, manifest)
        return manifest
