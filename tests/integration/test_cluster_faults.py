"""cluster-up fails clearly and leaves nothing behind when a port it needs is held by another process."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def test_given_ports_held_by_another_cluster_when_cluster_up_then_fails_naming_component_and_starts_nothing(cluster_env, tmp_path):
    # A second cluster-up with its own state dir sees the running cluster's etcd as "another process".
    assert httpx.get("http://127.0.0.1:23790/health", timeout=5).status_code == 200, "the local cluster must be up"
    env = {**os.environ, "MLOPS_LOCAL_DIR": str(tmp_path / "local")}
    result = subprocess.run(["bash", str(REPO_ROOT / "tests/infra/cluster-up.sh")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "etcd: port 127.0.0.1:23790 is taken by another process" in result.stderr
    assert "make cluster-down" in result.stderr  # says what to do next
    leftovers = sorted(p.name for p in (tmp_path / "local" / "run").glob("*.pid"))
    assert leftovers == [], f"a failed cluster-up left processes recorded: {leftovers}"
