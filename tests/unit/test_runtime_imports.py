"""The router and the model server import only what they use: no kserve (and with it kubernetes, fastapi,
grpc), no operator machinery, no conversion tools. A fresh interpreter is the only honest place to check that."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.unit.served_files import version_files

pytestmark = pytest.mark.unit

OPERATOR_ONLY = ("kubernetes", "kopf", "optuna", "kserve", "fastapi", "grpc")
NEVER_IN_THE_ROUTER = (*OPERATOR_ONLY, "pandas", "pyarrow", "sklearn", "scipy", "numpy", "boto3", "joblib")
# scikit-learn itself loads scipy; pandas (with pyarrow) comes only with an estimator that needs it.
NEVER_IN_THE_SERVER = (*OPERATOR_ONLY, "skl2onnx", "onnx")
ONLY_FOR_A_DATAFRAME_MODEL = ("pandas", "pyarrow")


def run_probe(script: str) -> str:
    """What a fresh interpreter prints running `script` (with `sys` imported)."""
    return subprocess.run([sys.executable, "-c", "import sys\n" + script], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def top_level_modules(probe: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running `probe`."""
    return set(run_probe(probe + "\nprint('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))").split())


def test_given_a_fresh_interpreter_when_the_router_is_imported_then_no_heavy_or_operator_package_comes_with_it():
    loaded = top_level_modules("import mlops_operator.runtime.route")
    assert "uvicorn" in loaded and "prometheus_client" in loaded  # the probe saw the router's real imports
    assert not loaded & set(NEVER_IN_THE_ROUTER), sorted(loaded & set(NEVER_IN_THE_ROUTER))


SERVE_PROBE = """
import asyncio, pathlib
import httpx
import mlops_operator.runtime.serve  # the entry point's own imports
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_limits import LimitSettings
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import ArtifactSource, SklearnModel
from tests.unit.served_files import MemoryVersion

files = {{name: (pathlib.Path({folder!r}) / name).read_bytes() for name in {names!r}}}
model = SklearnModel("m", "v1", source=ArtifactSource(MemoryVersion(files), "models/m/v1/"))
model.load()  # as the server loads a version
assert (model.runtime.compiled is not None) == ("model.onnx" in files)
app = ServeApp(model, ServeMetrics("m", "v1", "stable"), limits=LimitSettings().limits())

async def ask():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
        v1 = await client.post("/v1/models/m:predict", json={{"instances": [[0.1, 0.2, 0.3, 0.4]]}})
        v2 = await client.post("/v2/models/m/infer", json={{"inputs": [
            {{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}}]}})
        assert v1.status_code == 200 and v2.status_code == 200, (v1.text, v2.text)
    app.lanes.close()

asyncio.run(ask())
"""


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from mlops_operator.runtime.train_compile import compile_model

    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    estimator = LogisticRegression().fit(X, y)
    compiled = compile_model(estimator, X[:50])
    assert compiled.onnx is not None, compiled.report
    folder = tmp_path_factory.mktemp("served")
    for name, data in version_files(estimator, compiled).items():
        (folder / name).write_bytes(data)
    return folder


def test_given_a_fresh_server_with_a_scikit_learn_version_when_it_answers_then_neither_operator_packages_nor_pandas_load(
        model_files):
    loaded = top_level_modules(SERVE_PROBE.format(folder=str(model_files), names=["model.joblib"]))
    assert {"uvicorn", "numpy", "sklearn", "scipy"} <= loaded  # the probe really served the estimator
    assert "onnxruntime" not in loaded
    unneeded = set(NEVER_IN_THE_SERVER) | set(ONLY_FOR_A_DATAFRAME_MODEL)
    assert not loaded & unneeded, sorted(loaded & unneeded)


@pytest.fixture(scope="module")
def featureset_model_files(tmp_path_factory):
    """A version trained on a FeatureSet: its pipeline's transform works on DataFrames (4 raw input columns)."""
    from tests.unit.test_train_featureset import NUMERIC, breast_cancer, fit, snapshot, training
    from mlops_operator.runtime.train_config import FeatureSetRef
    from mlops_operator.runtime.train_data import snapshot_training_data

    rows, doc = snapshot(breast_cancer(), NUMERIC, entityKey="id", target="label")
    fitted, _ = fit(snapshot_training_data(rows, doc, FeatureSetRef(name="bc", version="v3"), "s3://b/f/", "f" * 64),
                    training())
    folder = tmp_path_factory.mktemp("served-featureset")
    for name, data in version_files(fitted.model).items():
        (folder / name).write_bytes(data)
    return folder


def test_given_a_fresh_server_with_a_featureset_version_when_it_answers_then_pandas_loads_because_the_model_needs_it(
        featureset_model_files):
    loaded = top_level_modules(SERVE_PROBE.format(folder=str(featureset_model_files), names=["model.joblib"]))
    assert {"sklearn", "pandas"} <= loaded
    assert not loaded & set(NEVER_IN_THE_SERVER), sorted(loaded & set(NEVER_IN_THE_SERVER))


def test_given_a_fresh_server_with_a_compiled_version_when_it_answers_then_only_onnxruntime_and_numpy_run_it(
        model_files):
    names = ["model.joblib", "model.onnx", "metrics.json"]
    loaded = top_level_modules(SERVE_PROBE.format(folder=str(model_files), names=names))
    assert {"uvicorn", "numpy", "onnxruntime"} <= loaded
    unneeded = set(NEVER_IN_THE_SERVER) | {"sklearn", "scipy", "pandas", "pyarrow", "joblib"}
    assert not loaded & unneeded, sorted(loaded & unneeded)


DATAFRAME_PROBE = """
import pathlib
import numpy as np
from mlops_operator.runtime.serve_model import ArtifactSource, SklearnModel
from mlops_operator.runtime.serve_v2 import Request
from tests.unit.served_files import MemoryVersion

files = {{"model.joblib": pathlib.Path({path!r}).read_bytes()}}
model = SklearnModel("m", "v1", source=ArtifactSource(MemoryVersion(files), "models/m/v1/"))
model.load()
print("pandas after load:", "pandas" in sys.modules)
answer, y = model.infer_now({{"instances": [[0.1, 0.2, 0.3, 0.4]]}})
print("pandas after a request:", "pandas" in sys.modules, y.tolist())
"""


def test_given_a_model_that_selects_columns_by_name_when_it_answers_then_pandas_loads_with_its_first_request(tmp_path):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    model = Pipeline([("columns", ColumnTransformer([("scale", StandardScaler(), ["a", "b"])], remainder="passthrough")),
                      ("model", LogisticRegression())]).fit(X, (X["a"] > 0).astype(int))
    (tmp_path / "model.joblib").write_bytes(version_files(model)["model.joblib"])
    out = run_probe(DATAFRAME_PROBE.format(path=str(tmp_path / "model.joblib")))
    expected = model.predict(pd.DataFrame([[0.1, 0.2, 0.3, 0.4]], columns=["a", "b", "c", "d"])).tolist()
    assert "pandas after load: False" in out, out
    assert f"pandas after a request: True {expected}" in out, out
