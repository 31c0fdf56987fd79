"""Pure parts of the S3 storage provider: URIs, manifests, client settings, error translation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mlops_operator.builders.layout import model_version_prefix, snapshot_prefix
from mlops_operator.providers.storage import (
    AccessDenied,
    AlreadyExistsError,
    ArtifactStore,
    IntegrityError,
    ObjectNotFound,
    S3Uri,
    StorageError,
    StorageUnavailable,
    build_manifest,
    check_file_name,
    client_config,
    decode_manifest,
    encode_manifest,
    new_attempt,
    object_name,
    parse_s3_uri,
    same_owner,
    verify_bytes,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
SHA_OF_HELLO = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


# --------------------------------------------------------------------------------------- URIs

@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://mlops/models/bc/bc-v1/", "mlops", "models/bc/bc-v1/"),
        ("s3://mlops/data/train.parquet", "mlops", "data/train.parquet"),
        ("s3://my.bucket-1", "my.bucket-1", ""),
        ("s3://mlops/", "mlops", ""),
        ("s3://mlops/a..b/c", "mlops", "a..b/c"),  # dots inside a name are not traversal
    ],
)
def test_given_valid_s3_uri_when_parsed_then_bucket_and_key_are_split(uri, bucket, key):
    assert parse_s3_uri(uri) == S3Uri(bucket, key)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://mlops/models/x", "not an s3://"),
        ("gs://mlops/models/x", "not an s3://"),
        ("file:///etc/passwd", "not an s3://"),
        ("s3:///models/x", "empty bucket"),
        ("s3://", "empty bucket"),
        ("s3://Bad_Bucket/x", "invalid bucket"),
        ("s3://mlops/models/../other/x", "traversal"),
        ("s3://mlops/../x", "traversal"),
        ("s3://mlops/models/./x", "traversal"),
        ("s3://mlops/models/..", "traversal"),
        ("s3://mlops//x", "must not start"),
        ("s3://mlops/a//b", "empty path segment"),
        ("s3://mlops/a\\..\\b", "invalid character"),
    ],
)
def test_given_bad_s3_uri_when_parsed_then_rejected_with_reason(uri, why):
    with pytest.raises(ValueError, match=why):
        parse_s3_uri(uri)


def test_given_prefix_without_slash_when_joined_then_names_do_not_glue_together():
    assert str(parse_s3_uri("s3://mlops/models/bc/v1").join("model.joblib")) == "s3://mlops/models/bc/v1/model.joblib"
    assert str(parse_s3_uri("s3://mlops/models/bc/v1/").join("model.joblib")) == "s3://mlops/models/bc/v1/model.joblib"


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", ".hidden", "x" * 300])
def test_given_unsafe_file_name_when_checked_then_rejected(name):
    with pytest.raises(ValueError):
        check_file_name(name)


def test_given_store_when_prefix_is_relative_then_default_bucket_and_trailing_slash_apply():
    store = ArtifactStore(client=None, default_bucket="mlops", endpoint="http://127.0.0.1:9")
    assert store.location("models/bc/v1") == S3Uri("mlops", "models/bc/v1/")
    assert store.location("s3://other/models/bc/v1/") == S3Uri("other", "models/bc/v1/")
    for bad in ("models/../x", "https://x/y", "s3://mlops/", "/abs"):
        with pytest.raises(ValueError):
            store.location(bad)


def test_given_namespace_model_and_version_when_prefix_built_then_every_path_carries_the_namespace():
    assert model_version_prefix("mlops", "team-a", "breast-cancer", "bc-v7") == \
        "s3://mlops/models/team-a/breast-cancer/bc-v7/"
    assert model_version_prefix("mlops", "team-a", "bc", "v1") != model_version_prefix("mlops", "team-b", "bc", "v1")
    assert snapshot_prefix("mlops", "team-b", "bc-features", "v3") == "s3://mlops/features/team-b/bc-features/v3/"
    for bad in (("..", "bc", "v1"), ("team-a", "..", "v1"), ("team-a", "bc", "a/b"), ("", "bc", "v1")):
        with pytest.raises(ValueError):
            model_version_prefix("mlops", *bad)
        with pytest.raises(ValueError):
            snapshot_prefix("mlops", *bad)


# ----------------------------------------------------------------------------------- manifest

def test_given_files_when_manifest_built_then_sha256_size_and_utc_time_recorded():
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    manifest = build_manifest({"b.txt": b"", "a.txt": b"hello"}, local)
    assert manifest == {
        "version": 1,
        "files": {
            "a.txt": {"sha256": SHA_OF_HELLO, "size": 5},
            "b.txt": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size": 0},
        },
        "createdAt": "2026-03-01T12:30:05Z",
    }


def test_given_no_files_or_a_manifest_file_when_manifest_built_then_refused():
    with pytest.raises(ValueError):
        build_manifest({}, NOW)
    with pytest.raises(ValueError, match="manifest.json"):
        build_manifest({"manifest.json": b"{}"}, NOW)
    with pytest.raises(ValueError):
        build_manifest({"../x": b"1"}, NOW)


def test_given_manifest_when_encoded_twice_then_bytes_identical_and_round_trip():
    manifest = build_manifest({"a.txt": b"hello"}, NOW)
    raw = encode_manifest(manifest)
    assert raw == encode_manifest(json.loads(raw))
    assert decode_manifest(raw, "s3://b/p/") == manifest


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"version": 3, "files": {"a": {"sha256": "' + b"0" * 64 + b'", "size": 1}}}',
        b'{"version": 2, "attempt": "../x", "files": {"a": {"sha256": "' + b"0" * 64 + b'", "size": 1}}}',
        b'{"version": 2, "owner": ["x"], "files": {"a": {"sha256": "' + b"0" * 64 + b'", "size": 1}}}',
        b'{"version": 1, "files": {}}',
        b'{"version": 1, "files": {"a": {"sha256": "xyz", "size": 1}}}',
        b'{"version": 1, "files": {"a": {"sha256": "' + b"0" * 64 + b'", "size": -1}}}',
        b'{"version": 1, "files": {"../a": {"sha256": "' + b"0" * 64 + b'", "size": 1}}}',
    ],
)
def test_given_malformed_manifest_when_decoded_then_integrity_error(raw):
    with pytest.raises(IntegrityError):
        decode_manifest(raw, "s3://b/p/")


def test_given_manifest_when_bytes_match_then_returned_else_integrity_error_says_why():
    manifest = build_manifest({"a.txt": b"hello"}, NOW)
    assert verify_bytes(manifest, "a.txt", b"hello", "s3://b/p/") == b"hello"
    with pytest.raises(IntegrityError, match="sha256"):
        verify_bytes(manifest, "a.txt", b"hellp", "s3://b/p/")
    with pytest.raises(IntegrityError, match="size"):
        verify_bytes(manifest, "a.txt", b"hello!", "s3://b/p/")
    with pytest.raises(IntegrityError, match="not listed"):
        verify_bytes(manifest, "b.txt", b"hello", "s3://b/p/")


# ------------------------------------------------------------------------------ client, errors

def test_given_default_config_then_minio_compatible_checksums_path_style_bounded_retries_timeouts():
    cfg = client_config()
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.s3 == {"addressing_style": "path"}
    assert cfg.retries == {"max_attempts": 3, "mode": "standard"}
    assert (cfg.connect_timeout, cfg.read_timeout) == (5.0, 30.0)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), StorageUnavailable),
        (NoCredentialsError(), AccessDenied),
        (_client_error("InvalidAccessKeyId", 403), AccessDenied),
        (_client_error("SignatureDoesNotMatch", 403), AccessDenied),
        (_client_error("403", 403), AccessDenied),
        (_client_error("PreconditionFailed", 412), AlreadyExistsError),
        (_client_error("NoSuchKey", 404), ObjectNotFound),
        (_client_error("404", 404), ObjectNotFound),
        (_client_error("ServiceUnavailable", 503), StorageUnavailable),
        (_client_error("InvalidArgument", 400), StorageError),
    ],
)
def test_given_botocore_failure_when_translated_then_caller_gets_the_distinct_error(raised, expected):
    store = ArtifactStore(client=None, default_bucket="mlops", endpoint="http://127.0.0.1:9")
    with pytest.raises(expected) as info:
        with store._translated("write", "s3://mlops/x"):
            raise raised
    assert type(info.value) is expected


def test_given_unreachable_endpoint_when_translated_then_message_names_the_endpoint():
    store = ArtifactStore(client=None, default_bucket="mlops", endpoint="http://10.1.2.3:9000")
    with pytest.raises(StorageUnavailable, match=r"http://10\.1\.2\.3:9000"):
        with store._translated("read", "s3://mlops/x"):
            raise EndpointConnectionError(endpoint_url="http://10.1.2.3:9000/mlops/x")


def test_given_credentials_when_store_repr_then_secrets_not_shown(monkeypatch):
    from mlops_operator.settings import S3Settings

    settings = S3Settings(s3_endpoint_url="http://127.0.0.1:9", s3_bucket="mlops",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s3cr3t-value")
    store = ArtifactStore.from_settings(settings)
    assert "s3cr3t-value" not in repr(store) and "AKIDEXAMPLE" not in repr(store)
    assert "s3cr3t-value" not in repr(settings)


# ------------------------------------------------------------------------------ owner and attempt

OWNER = {"namespace": "team-a", "kind": "ModelVersion", "name": "bc-v1", "uid": "u-1"}


def test_given_owner_attempt_and_spec_hash_when_manifest_built_then_format_2_records_them():
    manifest = build_manifest({"a.txt": b"hello"}, NOW, attempt="a-0123456789abcdef", owner=OWNER, spec_hash="f" * 64)
    assert manifest["version"] == 2 and manifest["attempt"] == "a-0123456789abcdef"
    assert manifest["owner"] == OWNER and manifest["specHash"] == "f" * 64
    assert decode_manifest(encode_manifest(manifest), "s3://b/p/") == manifest
    assert object_name(manifest, "a.txt") == "a-0123456789abcdef/a.txt"
    assert object_name(build_manifest({"a.txt": b"hello"}, NOW), "a.txt") == "a.txt"  # format 1: flat


@pytest.mark.parametrize("other, same", [
    ({**OWNER, "uid": "u-2"}, True),  # re-applied from git: a new uid, the same object
    ({**OWNER, "namespace": "team-b"}, False),
    ({**OWNER, "kind": "FeatureSet"}, False),
    ({**OWNER, "name": "bc-v2"}, False),
])
def test_given_manifest_owner_when_compared_then_namespace_kind_and_name_decide_never_the_uid(other, same):
    manifest = build_manifest({"a.txt": b"hello"}, NOW, owner=OWNER)
    assert same_owner(manifest, other) is same
    assert same_owner(build_manifest({"a.txt": b"hello"}, NOW), OWNER) is False  # no owner recorded


def test_given_two_attempts_when_named_then_they_never_collide():
    assert len({new_attempt() for _ in range(1000)}) == 1000
