"""The ``mlops-operator`` console script as a real process: liveness on /healthz, operator metrics on
/metrics, namespace scope from MLOPS_NAMESPACES, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from test_operator_references import (  # noqa: F401  (shared fixtures)
    KINDS,
    apply,
    crds,
    model_version,
    wait_condition,
    wait_for,
)
from tests.conftest import kubectl

pytestmark = pytest.mark.integration

OPERATOR = pathlib.Path(sys.executable).parent / "mlops-operator"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as rsp:
            return rsp.status, rsp.read().decode()
    except OSError:
        return 0, ""


def test_given_console_script_when_running_then_healthz_metrics_and_clean_sigterm(crds, namespace):  # noqa: F811
    health, metrics = _free_port(), _free_port()
    env = {**os.environ, "MLOPS_NAMESPACES": namespace, "MLOPS_HEALTH_PORT": str(health),
           "MLOPS_HTTP_PORT": str(metrics), "MLOPS_RECONCILE_INTERVAL": "2"}
    proc = subprocess.Popen([str(OPERATOR)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for("/healthz", lambda: _http(f"http://127.0.0.1:{health}/healthz")[0] == 200, timeout=30)
        apply(namespace, model_version("bc-proc", artifact={"uri": "s3://mlops/models/breast-cancer/bc-proc/",
                                                            "sha256": "0" * 64}))
        wait_condition(namespace, "modelversion", "bc-proc", "Retrying", "True", "S3SecretNotFound")
        body = wait_for("reconcile counters", lambda: (b := _http(f"http://127.0.0.1:{metrics}/metrics")[1])
                        and 'mlops_operator_reconciles_total{kind="ModelVersion"' in b and b)
        assert "mlops_operator_jobs_created_total" in body
        kubectl("-n", namespace, "delete", ",".join(KINDS), "--all", "--wait=true", "--timeout=60s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    assert "namespaces=['" + namespace + "']" in out
