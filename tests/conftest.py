"""Shared fixtures. Integration and e2e tests use the real local cluster described by `.local/env`
(written by `make cluster-up`); they fail loudly — never skip — when it is missing."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time
import uuid
from typing import Any, Callable, Mapping

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCAL_ENV = REPO_ROOT / ".local" / "env"


def _read_env_file(path: pathlib.Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key] = value
    return env


@pytest.fixture(scope="session")
def cluster_env() -> dict[str, str]:
    """The local cluster's environment, applied to os.environ for the whole session."""
    if not LOCAL_ENV.exists():
        pytest.fail(f"{LOCAL_ENV} not found: run `make cluster-up` first (integration/e2e need the real cluster)")
    env = _read_env_file(LOCAL_ENV)
    path = env.pop("PATH", "").replace("$PATH", os.environ.get("PATH", ""))
    if path:
        os.environ["PATH"] = path
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def kube_env(cluster_env: dict[str, str]) -> dict[str, str]:
    """KUBECONFIG and PATH (kubectl v1.34 of the local cluster first) are set; returns the env."""
    assert "KUBECONFIG" in cluster_env
    return cluster_env


@pytest.fixture(scope="session")
def s3_env(cluster_env: dict[str, str]) -> dict[str, str]:
    """S3_ENDPOINT_URL, S3_BUCKET and credentials of the local MinIO."""
    assert "S3_ENDPOINT_URL" in cluster_env
    return {k: cluster_env[k] for k in ("S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}


@pytest.fixture(scope="session")
def node_enabled(cluster_env: dict[str, str]) -> bool:
    return cluster_env.get("MLOPS_NODE_ENABLED", "0") == "1"


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries kubectl's own explanation (its stderr)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs kubectl from the local cluster's PATH; returns the completed process (text)."""
    proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The object's status condition of ``type_`` ({} when it has none)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def kubectl_wait(namespace: str, ref: str, condition: str, seconds: int = 90) -> None:
    """`kubectl wait --for=condition=...` as a user runs it: it must return 0 before its timeout."""
    done = kubectl("-n", namespace, "wait", f"--for=condition={condition}", ref, f"--timeout={seconds}s",
                   check=False, timeout=seconds + 30)
    assert done.returncode == 0, done.stderr


def poll_until(what: str, probe: Callable[[], Any], timeout: float, every: float,
               context: Callable[[], str] | None = None) -> Any:
    """Poll ``probe`` every ``every`` seconds until it returns something truthy (returned); fail naming ``what``
    with the last value seen and, when given, ``context()`` (e.g. the installed operator's last log lines)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    extra = f"\n{context()}" if context is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}{extra}")


def printed_columns(namespace: str, ref: str) -> dict[str, str]:
    """The columns `kubectl get <ref>` prints (header -> value), cut at the header's offsets so an empty
    cell stays empty instead of shifting its neighbours."""
    header, row = kubectl("-n", namespace, "get", ref).stdout.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    ends = starts[1:] + [max(len(row), len(header))]
    return {name: row[a:b].strip() for name, a, b in zip(names, starts, ends)}


@pytest.fixture(scope="session")
def kube_api(kube_env):
    """A kubernetes.client.ApiClient for the local cluster."""
    from kubernetes import client, config

    config.load_kube_config(config_file=kube_env["KUBECONFIG"])
    return client.ApiClient()


@pytest.fixture()
def namespace(kube_env, request):
    """A fresh namespace per test (Pod Security "restricted" enforced), deleted afterwards."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-").strip("-")
    manifest = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
"""
    kubectl("apply", "-f", "-", input=manifest)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


_TIER_ORDER = {"unit": 0, "chart": 1, "integration": 2, "e2e": 3, "faults": 4}


def pytest_collection_modifyitems(config, items):
    """Run the tiers in order: unit, chart (helm, no cluster), integration, then e2e (which installs the operator).
    A fault test runs with the tier of its directory: the integration tier pauses the installed operator for
    the rest of the session, so it must come before every test that needs that operator."""
    def tier(item) -> int:
        if item.get_closest_marker("faults") and "integration" in item.path.parts:
            return _TIER_ORDER["integration"]
        return min((_TIER_ORDER[m.name] for m in item.iter_markers() if m.name in _TIER_ORDER), default=len(_TIER_ORDER))

    items.sort(key=tier)  # stable: the order inside a tier is kept


def make_s3_client(env: Mapping[str, str]):
    """A plain boto3 client for an S3 server described by ``env`` (S3_ENDPOINT_URL, AWS_* keys), independent
    of the project's storage provider so tests check what is really in the bucket. botocore >= 1.36 sends
    CRC checksums by default; "when_required" keeps S3-compatible stores happy."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env.get("AWS_REGION") or "us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="session")
def s3_client(s3_env):
    """A plain boto3 client for the local MinIO."""
    return make_s3_client(s3_env)
