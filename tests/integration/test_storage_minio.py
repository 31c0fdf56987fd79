"""ArtifactStore against each real S3 server of the local cluster, MinIO and versitygw: commit by manifest,
refusal to overwrite, corruption and faults. Every test runs once per server (``s3_backend``); what each server
guarantees is in docs/storage.md and checked by the last test here.

Other modules import ``settings_for``, ``empty_prefix`` and ``_keys`` from here (``store`` and ``root`` are in
conftest); the per-server ``s3_env`` below shadows the MinIO one in this module only, so elsewhere ``store`` stays
on MinIO."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from mlops_operator.providers.storage import (
    AccessDenied,
    AlreadyExistsError,
    ArtifactStore,
    IntegrityError,
    OwnerMismatch,
    StorageUnavailable,
    client_config,
    sha256_hex,
)
from mlops_operator.settings import S3Settings

pytestmark = pytest.mark.integration

MODEL = b"\x80\x05model-bytes" * 1000
FILES = {"model.joblib": MODEL, "metrics.json": b'{"accuracy": 0.97}', "reference.json": b"{}"}


def settings_for(s3_env: dict[str, str], **overrides: str) -> S3Settings:
    values = {
        "s3_endpoint_url": s3_env["S3_ENDPOINT_URL"],
        "s3_bucket": s3_env["S3_BUCKET"],
        "aws_access_key_id": s3_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": s3_env["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": s3_env.get("AWS_REGION") or "us-east-1",
    }
    values.update(overrides)
    return S3Settings(**values)


@pytest.fixture()
def s3_env(s3_backend) -> dict[str, str]:
    """The S3 server under test (endpoint, bucket, credentials; the keys of the session ``s3_env``)."""
    return s3_backend.env



def empty_prefix(store: ArtifactStore, prefix: str) -> None:
    """Delete every object under ``prefix`` (test clean-up; the store itself never deletes)."""
    loc = store.location(prefix)
    listed = store._client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key).get("Contents", [])
    if listed:
        store._client.delete_objects(Bucket=loc.bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})


@pytest.fixture()
def s3_prefix(s3_env, store: ArtifactStore) -> Iterator[str]:
    """A fresh prefix per test under tests/, emptied afterwards."""
    prefix = f"s3://{s3_env['S3_BUCKET']}/tests/storage/{uuid.uuid4().hex}/"
    yield prefix
    empty_prefix(store, prefix)


def _raw_put(store: ArtifactStore, uri: str, data: bytes) -> None:
    """Bypass the store (a corrupting disk, a hand edit, a half-finished foreign upload)."""
    store.put_object(uri, data)


def _keys(store: ArtifactStore, prefix: str) -> set[str]:
    loc = store.location(prefix)
    listed = store._client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key).get("Contents", [])
    return {o["Key"][len(loc.key):] for o in listed}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_given_files_when_version_written_then_fetched_bytes_verify_and_manifest_is_last(store, s3_prefix):
    manifest = store.write_version(s3_prefix, FILES)
    assert set(manifest["files"]) == set(FILES)
    assert manifest["files"]["model.joblib"] == {"sha256": sha256_hex(MODEL), "size": len(MODEL)}
    assert store.read_manifest(s3_prefix) == manifest
    assert store.fetch_verified(s3_prefix, "model.joblib") == MODEL
    assert store.verify_prefix(s3_prefix) == manifest
    # Every file under the writer's own attempt directory; the manifest at the prefix names it.
    assert _keys(store, s3_prefix) == {f"{manifest['attempt']}/{n}" for n in FILES} | {"manifest.json"}
    # The manifest is the last object written: its timestamp is not older than any file's.
    loc = store.location(s3_prefix)
    stamps = {o["Key"].rsplit("/", 1)[1]: o["LastModified"]
              for o in store._client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key)["Contents"]}
    assert stamps["manifest.json"] == max(stamps.values())


def test_given_committed_version_when_written_again_then_refused_and_original_kept(store, s3_prefix):
    first = store.write_version(s3_prefix, FILES)
    with pytest.raises(AlreadyExistsError, match="immutable"):
        store.write_version(s3_prefix, {**FILES, "model.joblib": b"other model"})
    assert store.read_manifest(s3_prefix) == first
    assert store.fetch_verified(s3_prefix, "model.joblib") == MODEL


def test_given_writer_that_raced_past_the_check_when_committing_then_refused_and_winner_untouched(
        store, s3_prefix, s3_env):
    """Two writers, one version: the If-None-Match commit lets exactly one manifest in, and the loser's
    files (under its own attempt directory) never change a byte of the winner's; the loser cleans up."""
    winner = store.write_version(s3_prefix, FILES)

    class RacedStore(ArtifactStore):
        def has_manifest(self, prefix):  # the loser checked before the winner committed
            return False

    loser = RacedStore(store._client, s3_env["S3_BUCKET"], s3_env["S3_ENDPOINT_URL"])
    with pytest.raises(AlreadyExistsError, match="another writer"):
        loser.write_version(s3_prefix, {**FILES, "model.joblib": b"loser model"})
    assert store.read_manifest(s3_prefix) == winner
    assert store.verify_prefix(s3_prefix) == winner
    assert store.fetch_verified(s3_prefix, "model.joblib") == MODEL
    assert _keys(store, s3_prefix) == {f"{winner['attempt']}/{n}" for n in FILES} | {"manifest.json"}


def test_given_two_concurrent_writers_when_both_commit_then_exactly_one_wins_and_its_bytes_verify(
        store, s3_prefix, s3_env):
    """Real concurrency: both writers pass the up-front check and upload at the same time, then race to commit."""
    barrier = threading.Barrier(2, timeout=30)

    class Racer(ArtifactStore):
        def commit(self, prefix, manifest):
            barrier.wait()  # both have uploaded every file before either commits
            return super().commit(prefix, manifest)

    results: dict[str, object] = {}

    def write(tag: str) -> None:
        racer = Racer(ArtifactStore.from_settings(settings_for(s3_env))._client, s3_env["S3_BUCKET"])
        try:
            results[tag] = racer.write_version(s3_prefix, {**FILES, "model.joblib": tag.encode() * 50_000})
        except AlreadyExistsError as exc:
            results[tag] = exc

    threads = [threading.Thread(target=write, args=(t,)) for t in ("writer-a", "writer-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = {tag: r for tag, r in results.items() if isinstance(r, dict)}
    lost = {tag: r for tag, r in results.items() if isinstance(r, AlreadyExistsError)}
    assert len(won) == 1 and len(lost) == 1, results
    (tag, manifest), = won.items()
    assert store.read_manifest(s3_prefix) == manifest
    assert store.fetch_verified(s3_prefix, "model.joblib") == tag.encode() * 50_000
    assert store.verify_prefix(s3_prefix) == manifest
    assert _keys(store, s3_prefix) == {f"{manifest['attempt']}/{n}" for n in FILES} | {"manifest.json"}


def test_given_a_file_larger_than_what_is_kept_when_verified_then_memory_stays_at_one_chunk(store, s3_prefix):
    import tracemalloc

    big = {"model.joblib": bytes(range(256)) * (64 * 1024 * 4)}  # 64 MiB
    store.write_version(s3_prefix, big)
    del big
    manifest = store.read_manifest(s3_prefix)
    tracemalloc.start()
    try:
        store.verify_file(s3_prefix, "model.joblib", manifest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # streamed and hashed, never held
    with pytest.raises(IntegrityError, match="more than"):
        store.fetch_verified(s3_prefix, "model.joblib", manifest, max_bytes=1024 * 1024)


OWNER = {"namespace": "team-a", "kind": "ModelVersion", "name": "bc-v1", "uid": "u-1"}


def test_given_owner_recorded_when_another_object_deletes_then_refused_and_nothing_removed(store, s3_prefix):
    manifest = store.write_version(s3_prefix, FILES, owner=OWNER, spec_hash="f" * 64)
    assert store.read_manifest(s3_prefix)["owner"] == OWNER and manifest["specHash"] == "f" * 64
    before = _keys(store, s3_prefix)
    for other in ({**OWNER, "namespace": "team-b"}, {**OWNER, "name": "bc-v2"}, {**OWNER, "kind": "FeatureSet"}):
        with pytest.raises(OwnerMismatch):
            store.delete_version(s3_prefix, other)
    assert _keys(store, s3_prefix) == before and store.verify_prefix(s3_prefix) == manifest


def test_given_owner_when_it_deletes_its_version_then_exactly_its_prefix_is_gone(store, s3_prefix):
    store.write_version(s3_prefix, FILES, owner=OWNER)
    neighbour = s3_prefix.rstrip("/") + "-neighbour/"  # a name that shares the prefix string
    store.write_version(neighbour, FILES, owner={**OWNER, "name": "bc-v1-neighbour"})
    try:
        assert store.delete_version(s3_prefix, {**OWNER, "uid": "re-applied"}) == len(FILES) + 1
        assert _keys(store, s3_prefix) == set() and not store.has_manifest(s3_prefix)
        assert store.verify_prefix(neighbour)["owner"]["name"] == "bc-v1-neighbour"
    finally:
        empty_prefix(store, neighbour)


def test_given_one_byte_flipped_when_fetched_then_integrity_error_and_verify_prefix_fails(store, s3_prefix):
    manifest = store.write_version(s3_prefix, FILES)
    flipped = bytearray(MODEL)
    flipped[100] ^= 0x01
    _raw_put(store, f"{s3_prefix}{manifest['attempt']}/model.joblib", bytes(flipped))
    with pytest.raises(IntegrityError, match="sha256"):
        store.fetch_verified(s3_prefix, "model.joblib")
    with pytest.raises(IntegrityError):
        store.verify_prefix(s3_prefix)
    assert store.fetch_verified(s3_prefix, "metrics.json") == FILES["metrics.json"]  # others still fine


def test_given_file_missing_behind_manifest_when_verified_then_integrity_error(store, s3_prefix):
    manifest = store.write_version(s3_prefix, FILES)
    loc = store.location(s3_prefix)
    store._client.delete_object(Bucket=loc.bucket, Key=f"{loc.key}{manifest['attempt']}/reference.json")
    with pytest.raises(IntegrityError, match="missing"):
        store.verify_prefix(s3_prefix)


def test_given_partial_upload_without_manifest_then_never_loaded_and_a_retry_commits(store, s3_prefix):
    _raw_put(store, s3_prefix + "model.joblib", b"half of a model")
    assert not store.has_manifest(s3_prefix)
    with pytest.raises(IntegrityError, match="no manifest.json"):
        store.read_manifest(s3_prefix)
    with pytest.raises(IntegrityError, match="no manifest.json"):
        store.fetch_verified(s3_prefix, "model.joblib")
    store.write_version(s3_prefix, FILES)  # the leftover was never part of a version: never named, never read
    assert store.fetch_verified(s3_prefix, "model.joblib") == MODEL


def test_given_tampered_manifest_when_read_then_integrity_error(store, s3_prefix):
    store.write_version(s3_prefix, FILES)
    _raw_put(store, s3_prefix + "manifest.json", b'{"version": 1, "files": {"model.joblib": {"sha256": "zz"}}}')
    with pytest.raises(IntegrityError, match="invalid entry"):
        store.fetch_verified(s3_prefix, "model.joblib")


class _CuttingProxy:
    """A loopback TCP proxy to the S3 server that dies for good after ``limit`` request bytes: S3 going down
    in the middle of an upload, for real, without touching the store's code."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.target_port, self.limit, self.sent = target_port, limit, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dead = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counts: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if counts:
                    self.sent += len(chunk)
                    if self.sent > self.limit:
                        self.kill()
                        break
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def kill(self) -> None:
        self.dead.set()
        self.listener.close()


def test_given_s3_dies_mid_upload_when_writing_then_unavailable_and_no_manifest(store, s3_prefix, s3_env):
    from urllib.parse import urlparse

    proxy = _CuttingProxy(urlparse(s3_env["S3_ENDPOINT_URL"]).port, limit=1_500_000)
    try:
        via_proxy = ArtifactStore.from_settings(
            settings_for(s3_env, s3_endpoint_url=f"http://127.0.0.1:{proxy.port}"),
            client_config(connect_timeout=2, read_timeout=5),
        )
        big = {"a.bin": b"a" * 1_000_000, "b.bin": b"b" * 1_000_000}  # dies inside b.bin
        with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{proxy.port}"):
            via_proxy.write_version(s3_prefix, big)
    finally:
        proxy.kill()
    assert "manifest.json" not in _keys(store, s3_prefix)
    assert any(k.endswith("/a.bin") for k in _keys(store, s3_prefix))  # the partial upload exists ...
    with pytest.raises(IntegrityError):
        store.fetch_verified(s3_prefix, "a.bin")  # ... and is never used


def test_given_endpoint_down_when_reading_or_writing_then_storage_unavailable_names_endpoint(s3_env, s3_prefix):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    down = ArtifactStore.from_settings(settings_for(s3_env, s3_endpoint_url=endpoint),
                                       client_config(connect_timeout=1, read_timeout=2))
    with pytest.raises(StorageUnavailable, match=endpoint):
        down.read_manifest(s3_prefix)
    with pytest.raises(StorageUnavailable, match=endpoint):
        down.write_version(s3_prefix, FILES)


def test_given_wrong_credentials_when_used_then_access_denied_without_leaking_the_secret(
        s3_env, s3_prefix, store, s3_backend):
    store.write_version(s3_prefix, FILES)
    wrong = ArtifactStore.from_settings(settings_for(s3_env, aws_secret_access_key="definitely-wrong-secret"))
    for call in (lambda: wrong.read_manifest(s3_prefix),
                 lambda: wrong.write_version(s3_prefix + "other/", FILES),
                 lambda: wrong.has_manifest(s3_prefix)):
        with pytest.raises(AccessDenied) as info:
            call()
        assert "definitely-wrong-secret" not in str(info.value)
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in str(info.value)
    unknown_key = ArtifactStore.from_settings(settings_for(s3_env, aws_access_key_id="NOSUCHKEY"))
    with pytest.raises(AccessDenied):
        unknown_key.fetch_verified(s3_prefix, "model.joblib")
    if s3_backend.kind == "versitygw":
        # docs/storage.md: versitygw answers a HEAD with an unknown access key id with a bare 404 (its GETs and PUTs
        # say XAdminUserNotFound), so the commit check reads "not committed"; nothing can be written with that key.
        assert unknown_key.has_manifest(s3_prefix) is False
    else:
        with pytest.raises(AccessDenied):
            unknown_key.has_manifest(s3_prefix)


def test_given_each_server_when_probed_then_it_gives_the_guarantees_docs_storage_md_lists(s3_backend, store, s3_prefix):
    """Real requests, the probe of tests/infra/s3_guarantees.py: what the store relies on holds on both servers;
    where the servers differ (nothing the operator relies on), each one's documented behaviour is asserted."""
    from tests.infra.s3_guarantees import Probe

    loc = store.location(s3_prefix)
    probe = Probe(store._client, loc.bucket, loc.key)
    try:
        for check in (probe.conditional_put, probe.conditional_put_after_delete, probe.conditional_put_concurrent,
                      probe.read_after_write, probe.delete_objects, probe.list_pagination, probe.streaming_get):
            ok, seen = check()
            assert ok, f"{s3_backend.kind}: {check.__name__}: {seen}"
        _, seen = probe.object_and_prefix_same_name()
        if s3_backend.kind == "versitygw":  # a file system underneath: "a" is a file, so "a/b" cannot exist
            assert "refused" in seen and "409 ObjectParentIsFile" in seen, seen
        else:
            assert seen.startswith("both"), seen
    finally:
        probe.cleanup()
