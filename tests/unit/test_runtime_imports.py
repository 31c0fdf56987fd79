"""The router process imports only what it uses: no kserve (and with it kubernetes, fastapi, pandas, grpc),
no ML libraries, no operator machinery. A fresh interpreter is the only honest place to check that."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

NEVER_IN_THE_ROUTER = ("kubernetes", "kopf", "optuna", "kserve", "fastapi", "grpc", "pandas", "pyarrow", "sklearn",
                       "scipy", "numpy", "boto3", "joblib")


def test_given_a_fresh_interpreter_when_the_router_is_imported_then_no_heavy_or_operator_package_comes_with_it():
    probe = ("import sys, mlops_operator.runtime.route; "
             "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                timeout=60).stdout.split())
    assert "uvicorn" in loaded and "prometheus_client" in loaded  # the probe saw the router's real imports
    assert not loaded & set(NEVER_IN_THE_ROUTER), sorted(loaded & set(NEVER_IN_THE_ROUTER))
