"""``spec.strategy.shadow.agreementTolerance`` reaches the builtin router's configuration (no longer only
its environment), so a regression model's shadow can meet ``minAgreement``: the CR, the routes, the
document the operator writes, the router's parser, and real predictions compared on loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

from mlops_operator.builders.serving import router_document
from mlops_operator.logic.rollout.state import Routes
from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_config import ConfigError, parse_config
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_asgi import LoopbackServer
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime
from tests.unit.rollout_world import serving, spec

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

MODEL = "diabetes"


def shadow_spec(**settings) -> object:
    return spec(version="v2", strategy={"type": "Shadow", "shadow": {"mirrorPercent": 100, "duration": "1m",
                                                                      "autoPromote": False, **settings}},
                analysis={"interval": "30s", "minSamples": 5})


@pytest.mark.parametrize("settings, in_document", [
    ({}, None),                                   # absent: the document is what it was (router default)
    ({"agreementTolerance": 0}, 0.0),
    ({"agreementTolerance": 0.05}, 0.05),
])
def test_given_a_shadow_spec_when_mirroring_then_its_tolerance_reaches_the_router_document_and_parser(
        settings, in_document):
    md = shadow_spec(**settings)
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("currentStep") == 1)
    routes = world.routes
    assert routes.shadow == "v2" and routes.shadow_tolerance == in_document
    doc = json.loads(json.dumps(router_document(routes, namespace="ns", deployment="bc", model=MODEL, generation=3)))
    assert doc["shadow"].get("tolerance") == in_document and ("tolerance" in doc["shadow"]) is (in_document is not None)
    assert parse_config(doc).shadow_tolerance == in_document


def test_given_no_shadow_when_routing_then_no_tolerance_is_written():
    doc = router_document(Routes("v1", shadow="v2", mirror_percent=0, shadow_tolerance=0.1), namespace="ns",
                          deployment="bc", model=MODEL, generation=1)
    assert "shadow" not in doc


@pytest.mark.parametrize("value", [-0.01, "0.1", True, math.nan, math.inf])
def test_given_a_bad_tolerance_in_the_router_document_when_parsed_then_the_field_is_named(value):
    doc = {"generation": 1, "stable": {"url": "http://s"}, "shadow": {"url": "http://sh", "tolerance": value}}
    with pytest.raises(ConfigError, match="shadow.tolerance"):
        parse_config(doc)


@pytest.mark.parametrize("value, ok", [(0, True), (0.5, True), (1e3, True), (-0.001, False), ("x", False)])
def test_given_an_agreement_tolerance_when_the_spec_is_validated_then_only_numbers_from_zero_pass(value, ok):
    if ok:
        assert shadow_spec(agreementTolerance=value).strategy.shadow.agreement_tolerance == value
    else:
        with pytest.raises(ValidationError, match="agreement_tolerance|agreementTolerance"):
            shadow_spec(agreementTolerance=value)


# ------------------------------------------------------------------------------------------ real router


def regression_models() -> tuple[LinearRegression, LinearRegression, np.ndarray, float]:
    """Two regression models fitted on slightly different rows: close, never identical, predictions."""
    x, y = load_diabetes(return_X_y=True)
    a, b = LinearRegression().fit(x, y), LinearRegression().fit(x[:-20], y[:-20])
    rows = x[:20]
    pa, pb = a.predict(rows), b.predict(rows)
    rel = float(np.max(np.abs(pa - pb) / np.maximum(np.abs(pa), np.abs(pb))))
    assert 1e-6 < rel < 0.5, rel
    return a, b, rows, rel


@contextlib.asynccontextmanager
async def stack(stable_model, shadow_model, tolerance: float | None):
    def server(estimator, version: str) -> LoopbackServer:
        return LoopbackServer(ServeApp(SklearnModel(MODEL, version, runtime=ModelRuntime(estimator)),
                                       ServeMetrics(MODEL, version, "test")))

    async with server(stable_model, "v1") as stable, server(shadow_model, "v2") as shadow:
        routes = Routes("v1", shadow="v2", mirror_percent=100, shadow_tolerance=tolerance)
        doc = router_document(routes, namespace="ns", deployment="bc", model=MODEL, generation=1)
        doc["stable"]["url"], doc["shadow"]["url"] = stable.url, shadow.url  # loopback, not cluster DNS
        doc["shadow"]["version"] = f"v2-{tolerance}"  # its own metric series per case
        metrics = RouterMetrics()
        state = RouterState(metrics)
        state.offer(doc, "test")
        app = RouterApp(state, ShadowMirror(metrics.observe), metrics, timeout=5)
        async with LoopbackServer(app) as running, httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            yield app, client


def counted(version: str, result: str) -> float:
    return REGISTRY.get_sample_value("mlops_shadow_predictions_total",
                                     {"model": MODEL, "version": version, "result": result}) or 0.0


@pytest.mark.parametrize("factor, agree", [(None, False), (2.0, True), (0.0, False)])
async def test_given_a_regression_shadow_when_compared_by_the_router_then_the_configured_tolerance_decides(
        factor, agree):
    stable_model, shadow_model, rows, rel = regression_models()
    tolerance = None if factor is None else rel * factor
    async with stack(stable_model, shadow_model, tolerance) as (app, client):
        for row in rows:
            answer = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": [row.tolist()]})
            assert answer.status_code == 200
        await asyncio.wait_for(app.mirror.join(), timeout=10)
        version = app.state.route.config.shadow.version
    assert counted(version, "agree" if agree else "disagree") == len(rows)
    assert counted(version, "disagree" if agree else "agree") == 0
