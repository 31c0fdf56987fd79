"""Integration tests drive the operator's handlers themselves (in-process Kopf or direct passes), so an
operator installed in the cluster (`make install`, `make demo`, the e2e tier) must not act on the same
objects meanwhile: it is scaled to zero for the session and restored afterwards.

Storage tests that take ``s3_backend`` run once per S3 server of the local cluster (MinIO and versitygw).
``store`` and ``root`` give a test an ArtifactStore on the S3 server of its ``s3_env`` and a fresh prefix of its own."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator

import pytest

from mlops_operator.providers.storage import ArtifactStore
from tests.conftest import kubectl
from test_storage_minio import empty_prefix, settings_for

INSTALLED = ("mlops-system", "mlops-operator")


@pytest.fixture(scope="session", autouse=True)
def installed_operator_paused(cluster_env):
    namespace, name = INSTALLED
    got = kubectl("-n", namespace, "get", "deployment", name, "-o", "json", check=False)
    if got.returncode != 0:
        yield
        return
    replicas = json.loads(got.stdout)["spec"].get("replicas", 1)
    kubectl("-n", namespace, "scale", "deployment", name, "--replicas=0")
    kubectl("-n", namespace, "wait", "pods", "-l", "app.kubernetes.io/name=mlops-operator", "--for=delete", "--timeout=60s", check=False)
    yield
    kubectl("-n", namespace, "scale", "deployment", name, f"--replicas={replicas}", check=False)


# --- S3 servers: the storage contract holds on every S3 implementation we run (docs/storage.md) ---------------

S3_BACKENDS = ("minio", "versitygw")


@dataclasses.dataclass(frozen=True)
class S3Backend:
    """One S3 server of the local cluster: MinIO (S3_*, AWS_*) or the second one (S3_ALT_*, versitygw).
    ``env`` has the keys of the session ``s3_env`` (S3_ENDPOINT_URL, S3_BUCKET, AWS_*) for that server."""

    kind: str
    env: dict[str, str]


def _backend_env(kind: str, cluster_env: dict[str, str]) -> dict[str, str]:
    if kind == "minio":
        keys = ("S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        return {**{k: cluster_env[k] for k in keys}, "AWS_REGION": cluster_env.get("AWS_REGION", "us-east-1")}
    if cluster_env.get("S3_ALT_KIND") != kind:
        pytest.fail(f"S3 server {kind!r} is not in .local/env (S3_ALT_KIND={cluster_env.get('S3_ALT_KIND')!r}): "
                    "run `make cluster-up` (it starts MinIO and the second S3 server)")
    return {"S3_ENDPOINT_URL": cluster_env["S3_ALT_ENDPOINT_URL"], "S3_BUCKET": cluster_env["S3_ALT_BUCKET"],
            "AWS_ACCESS_KEY_ID": cluster_env["S3_ALT_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": cluster_env["S3_ALT_SECRET_ACCESS_KEY"], "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session", params=S3_BACKENDS)
def s3_backend(request, cluster_env) -> S3Backend:
    """Each S3 server in turn: a test depending on it runs once per server. A module whose fixtures build on
    ``s3_env`` (store, fresh prefix) moves them all to the server under test with one override:
    ``@pytest.fixture() def s3_env(s3_backend): return s3_backend.env`` (tests/integration/test_storage_minio.py)."""
    return S3Backend(request.param, _backend_env(request.param, cluster_env))


@pytest.fixture()
def store(s3_env) -> ArtifactStore:
    """An ArtifactStore on the S3 server of ``s3_env`` (the session's MinIO unless a module shadows it)."""
    return ArtifactStore.from_settings(settings_for(s3_env))


@pytest.fixture()
def root(request, s3_env, store) -> Iterator[str]:
    """A fresh place per test, s3://<bucket>/tests/<test module>/<uuid>/, emptied afterwards."""
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    prefix = f"s3://{s3_env['S3_BUCKET']}/tests/{module}/{uuid.uuid4().hex}/"
    yield prefix
    empty_prefix(store, prefix)
