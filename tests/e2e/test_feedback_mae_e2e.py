"""Label feedback for a regression model on the real cluster, through the ModelDeployment's entry Service:
the model server exports `mlops_model_mae` and its absolute-error counter, the real Prometheus scrapes them,
the operator's Prometheus provider reads the builtin `mae` check from them, and a canary whose analysis
includes `mae` is judged on those labelled rows and promoted."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
from sklearn.datasets import load_diabetes

from mlops_operator.logic.analysis import Check
from mlops_operator.providers.metrics import measure
from mlops_operator.providers.metrics.base import Target
from mlops_operator.providers.metrics.prometheus import PrometheusProvider
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.conftest import wait_for_phase, wait_until
from tests.e2e.prometheus_kit import query as prometheus, wait_series

pytestmark = pytest.mark.e2e

MODEL = "diabetes"
X, Y = load_diabetes(return_X_y=True)
MAE = {"name": "mae", "builtin": "mae", "max": 100.0}  # the targets span 25-346; a linear model is off by ~45


def _regressor(name: str, alpha: float) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": MODEL, "training": {
                "dataset": {"builtin": "diabetes"}, "estimator": "sklearn.linear_model.Ridge",
                "hyperparameters": {"alpha": alpha}, "split": {"testFraction": 0.2, "seed": 42}}}}


def test_given_a_regression_model_when_labels_are_fed_back_then_prometheus_has_its_mae_and_a_canary_checks_it(
        user_namespace, cluster_env):
    ns, prom = user_namespace, cluster_env["PROMETHEUS_URL"]
    v1, v2 = kit.unique_names("r1", "r2")
    for name, alpha in ((v1, 1.0), (v2, 0.1)):
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_regressor(name, alpha)))
    for name in (v1, v2):
        phase = wait_for_phase(ns, "mv", name, {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"]
        assert phase == "Ready", f"{name}: {phase}"
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}}
    md = kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, MAE, failure_limit=2), name="reg")
    md["spec"]["model"] = MODEL
    base = kit.deploy_first(ns, md)

    # The server exports its feedback counters from 0; the window's increase() sees the labels below only if
    # Prometheus scraped that 0 first (a new pod may not have been scraped yet).
    wait_series(prom, f'mlops_feedback_rows_total{{namespace="{ns}",version="{v1}"}}', lambda r: len(r) >= 1)

    # 20 rows predicted by id through the entry Service, then their true values sent back by that id.
    rows, truth = X[:20].tolist(), Y[:20].tolist()
    predicted = httpx.post(f"{base}/v2/models/{MODEL}/infer", timeout=10, json={
        "id": "mae-batch", "inputs": [{"name": "input-0", "shape": [20, 10], "datatype": "FP64", "data": rows}]})
    assert predicted.status_code == 200, predicted.text
    values = predicted.json()["outputs"][0]["data"]
    expected = sum(abs(p - t) for p, t in zip(values, truth)) / 20
    fed = httpx.post(f"{base}/v2/models/{MODEL}/feedback", json={"id": "mae-batch", "labels": truth}, timeout=10)
    assert fed.status_code == 200 and fed.headers["x-mlops-version"] == v1, fed.text
    assert fed.json()["mae"] == pytest.approx(expected) and "accuracy" not in fed.json(), fed.json()

    gauge = wait_series(prom, f'mlops_model_mae{{namespace="{ns}"}}',
                        lambda r: len(r) == 1 and float(r[0]["value"][1]) == pytest.approx(expected))
    assert {k: gauge[0]["metric"].get(k) for k in ("namespace", "model", "version")} == {
        "namespace": ns, "model": MODEL, "version": v1}, gauge[0]["metric"]
    wait_series(prom, f'mlops_feedback_absolute_error_total{{namespace="{ns}",version="{v1}"}}',
                lambda r: len(r) == 1 and float(r[0]["value"][1]) == pytest.approx(expected * 20))
    assert not prometheus(prom, f'mlops_model_accuracy{{namespace="{ns}"}}')  # a regressor has no accuracy

    # The operator's builtin check, asked of the real Prometheus: the window's MAE over its labelled rows.
    # The check counts labelled rows with increase() over the window: it is asked until that window holds them.
    provider = PrometheusProvider(prom)

    def mae_measured():
        (answer,) = asyncio.run(measure(provider, [Check("mae", builtin="mae", max=100.0)],
                                        Target(ns, "reg", MODEL, v1, "stable"), timedelta(minutes=5)))
        return answer if answer.samples or answer.error is not None else None

    result = wait_until("the builtin mae check has a value", mae_measured, timeout=90, every=2)
    assert result.error is None and result.value == pytest.approx(expected, rel=1e-6), result
    assert result.samples is not None and result.samples >= 20, result

    # A canary judged on mae: every prediction's true value flows back through the entry Service.
    with kit.LabelledLoad(base, model=MODEL, rows=X, labels=Y) as load:
        kit.patch_spec(ns, {"version": v2}, name="reg")
        st = kit.watch(ns, lambda s: s.get("phase") in {"RolledBack", "Failed"} or (
            s.get("stableVersion") == v2 and s.get("phase") == "Succeeded"), 420, name="reg")
    assert st["stableVersion"] == v2 and st["phase"] == "Succeeded", st
    measured = [a for a in st.get("analysis", []) if a["metric"] == "mae"]
    assert any(a["passed"] and a.get("samples", 0) >= 5 and 0 < a["value"] <= 100 for a in measured), measured
    # As with accuracy: only a prediction v1 made just before it left, labelled once its pods were gone, is lost.
    assert {code for _, code in load.answers} <= {200, 410} and len(load.answers) > 50, load.answers[:5]
    assert sum(code == 410 for _, code in load.answers) <= 2, [a for a in load.answers if a[1] != 200]
