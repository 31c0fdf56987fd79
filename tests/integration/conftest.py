"""Integration tests drive the operator's handlers themselves (in-process Kopf or direct passes), so an
operator installed in the cluster (`make install`, `make demo`, the e2e tier) must not act on the same
objects meanwhile: it is scaled to zero for the session and restored afterwards."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kubectl

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
