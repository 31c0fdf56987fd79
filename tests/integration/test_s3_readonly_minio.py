"""The read-only MinIO user (cluster-up.sh; what model servers get through serving.s3SecretName) against the
real MinIO: it reads and verifies a committed version, and every write or delete is refused (AccessDenied)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from mlops_operator.providers.storage import AccessDenied, ArtifactStore, ObjectNotFound, make_s3_client
from mlops_operator.settings import S3Settings

pytestmark = pytest.mark.integration

MODEL = b"\x80\x05read-only-model" * 500
FILES = {"model.joblib": MODEL, "metrics.json": b'{"accuracy": 0.97}'}


def settings(s3_env: dict[str, str], access_key: str, secret_key: str) -> S3Settings:
    return S3Settings(s3_endpoint_url=s3_env["S3_ENDPOINT_URL"], s3_bucket=s3_env["S3_BUCKET"],
                      aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                      AWS_REGION=s3_env.get("AWS_REGION") or "us-east-1")


@pytest.fixture()
def readonly(s3_env, cluster_env) -> S3Settings:
    if not cluster_env.get("S3_READONLY_ACCESS_KEY_ID"):
        pytest.fail(".local/env has no S3_READONLY_* keys: run `make cluster-up` (it creates the read-only user)")
    return settings(s3_env, cluster_env["S3_READONLY_ACCESS_KEY_ID"], cluster_env["S3_READONLY_SECRET_ACCESS_KEY"])


@pytest.fixture()
def writer(s3_env) -> ArtifactStore:
    return ArtifactStore.from_settings(settings(s3_env, s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]))


@pytest.fixture()
def committed(s3_env, writer: ArtifactStore) -> Iterator[str]:
    """A version committed with the read-write credentials (what a training Job leaves), removed afterwards."""
    prefix = f"s3://{s3_env['S3_BUCKET']}/tests/readonly/{uuid.uuid4().hex}/"
    writer.write_version(prefix, FILES)
    yield prefix
    writer.delete_prefix(prefix)


def test_given_the_read_only_user_when_reading_a_committed_version_then_it_is_verified_and_listed(readonly, committed):
    store = ArtifactStore.from_settings(readonly)
    manifest = store.read_manifest(committed)
    assert store.fetch_verified(committed, "model.joblib", manifest) == MODEL
    assert store.has_manifest(committed)
    assert len(store.list_keys(committed)) == len(FILES) + 1  # the files and the manifest
    # ListBucket is granted, so a missing object is reported as missing, not as a permission problem.
    with pytest.raises(ObjectNotFound):
        store.read_object(f"{committed}no-such-file")


def test_given_the_read_only_user_when_writing_then_every_put_is_access_denied(readonly, committed, writer):
    store = ArtifactStore.from_settings(readonly)
    with pytest.raises(AccessDenied):
        store.put_object(f"{committed}model.joblib", b"tampered")
    with pytest.raises(AccessDenied):
        store.put_object(f"{committed}new-file", b"new")
    with pytest.raises(AccessDenied):
        store.write_version(f"{committed}other/", FILES)
    assert writer.fetch_verified(committed, "model.joblib") == MODEL  # untouched


def test_given_the_read_only_user_when_deleting_then_it_is_access_denied_and_the_object_stays(readonly, committed,
                                                                                             writer):
    client = make_s3_client(readonly)
    loc = writer.location(committed)
    keys = writer.list_keys(committed)
    with pytest.raises(ClientError) as denied:
        client.delete_object(Bucket=loc.bucket, Key=keys[0])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    out = client.delete_objects(Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert {e["Code"] for e in out.get("Errors", [])} == {"AccessDenied"} and not out.get("Deleted")
    assert writer.list_keys(committed) == keys
    assert writer.verify_prefix(committed)["files"].keys() == FILES.keys()
