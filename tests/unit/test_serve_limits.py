"""Fair under abuse: admission caps, worker lanes, early refusals by reason, in the server and the router.

The servers run in-process (ASGI) with an injected estimator; "busy" is made deterministic with an estimator
whose predict blocks on an Event, so no test depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlops_operator.builders.serving import RouterInput, ServingInput, build_router_deployment, build_serving_deployment
from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_asgi import LoopbackServer
from mlops_operator.runtime.serve_limits import (
    LARGE,
    SMALL,
    Admission,
    Lanes,
    LimitSettings,
    Limits,
    Rejected,
    check_rows,
    declared_size,
)
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

X, Y = load_iris(return_X_y=True)


class Gated:
    """An estimator whose predict on more than `gate_rows` rows waits until released (a 'huge' request)."""

    def __init__(self, estimator: LogisticRegression, gate_rows: int):
        self.inner, self.gate_rows = estimator, gate_rows
        self.n_features_in_ = estimator.n_features_in_
        self.classes_ = estimator.classes_
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) > self.gate_rows:
            self.entered.set()
            assert self.release.wait(20)
        return self.inner.predict(x)


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(X, Y)


def make_app(estimator, limits: Limits, lanes: Lanes | None = None, names: list[str] | None = None) -> ServeApp:
    name = f"iris-{uuid.uuid4().hex[:8]}"
    model = SklearnModel(name, "v1", runtime=ModelRuntime(estimator, feature_names=names))
    return ServeApp(model, ServeMetrics(name, "v1", "stable"), limits=limits, lanes=lanes)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve", timeout=20)


def rejected(app: ServeApp, reason: str) -> float:
    name, version, role = app.metrics.labels
    labels = {"model": name, "version": version, "role": role, "reason": reason}
    return REGISTRY.get_sample_value("mlops_rejected_requests_total", labels) or 0.0


def v1(rows) -> dict:
    return {"instances": np.asarray(rows).tolist()}


def v2(rows) -> dict:
    rows = np.asarray(rows)
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}


# ------------------------------------------------------------------------------------------ pure parts
def test_given_caps_when_admitting_then_each_lane_is_bounded_and_leave_frees_a_slot():
    admission = Admission(Limits(max_in_flight=3, max_large_in_flight=1, large_bytes=100))
    assert admission.enter(100) == SMALL and admission.enter(101) == LARGE
    with pytest.raises(Rejected) as large:
        admission.enter(5000)
    assert (large.value.status, large.value.reason) == (429, "large_overloaded")
    assert large.value.headers() == [(b"retry-after", b"1")]
    assert admission.enter(10) == SMALL  # small requests still get in while the large lane is full
    with pytest.raises(Rejected) as full:
        admission.enter(10)
    assert (full.value.status, full.value.reason) == (429, "overloaded")
    admission.leave(SMALL)
    assert admission.enter(10) == SMALL


def test_given_rows_over_the_cap_when_checked_then_413_naming_the_limit():
    check_rows(10, Limits(max_rows=10))
    with pytest.raises(Rejected) as exc:
        check_rows(11, Limits(max_rows=10))
    assert exc.value.status == 413 and exc.value.reason == "too_many_rows" and "limit is 10 rows" in str(exc.value)


@pytest.mark.parametrize("field", ["max_rows", "max_in_flight", "max_large_in_flight", "large_bytes"])
def test_given_a_non_positive_limit_when_built_then_refused(field):
    with pytest.raises(ValueError):
        Limits(**{field: 0})


def test_given_environment_when_settings_read_then_limits_follow_it(monkeypatch):
    monkeypatch.setenv("MLOPS_LIMIT_MAX_ROWS", "7")
    monkeypatch.setenv("MLOPS_LIMIT_MAX_IN_FLIGHT", "9")
    monkeypatch.setenv("MLOPS_LIMIT_MAX_ABS_VALUE", "1000.5")
    limits = LimitSettings().limits()
    assert (limits.max_rows, limits.max_in_flight, limits.max_abs_value) == (7, 9, 1000.5)
    assert limits.max_large_in_flight == Limits().max_large_in_flight


async def test_given_a_request_when_admitted_then_refused_before_reading_if_announced_and_freed_unless_taken():
    admission = Admission(Limits(max_in_flight=1, large_bytes=100))
    reads: list[str] = []

    async def read() -> bytes:
        reads.append("read")
        return b"x" * 10

    async with admission.admitted(b"10", 1000, read) as slot:
        assert (slot.body, slot.lane, admission.in_flight[SMALL]) == (b"x" * 10, SMALL, 1)
        with pytest.raises(Rejected):  # announced: refused with no read
            async with admission.admitted(b"10", 1000, read):
                pass
    assert reads == ["read"] and admission.in_flight[SMALL] == 0
    async with admission.admitted(None, 1000, read) as slot:  # not announced: admitted on the size read
        taken = slot.take()
    assert admission.in_flight[SMALL] == 1  # taken: the caller frees it
    admission.leave(taken)
    with pytest.raises(RuntimeError):
        async with admission.admitted(b"10", 1000, read):
            raise RuntimeError("the work failed")
    assert admission.in_flight == {SMALL: 0, LARGE: 0}


@pytest.mark.parametrize("value, expected", [(b"12", 12), (b"", None), (b"-1", None), (None, None)])
def test_given_a_content_length_when_read_then_only_valid_sizes_count(value, expected):
    assert declared_size(value) == expected


async def test_given_work_cancelled_while_running_when_it_ends_then_done_runs_after_the_thread_finished():
    lanes, finished, freed = Lanes(1, 1), threading.Event(), asyncio.Event()
    started = threading.Event()

    def work() -> None:
        started.set()
        finished.wait(10)

    task = asyncio.create_task(lanes.run(LARGE, freed.set, work))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not freed.is_set()  # the thread still works: its slot is still taken
    finished.set()
    await asyncio.wait_for(freed.wait(), 5)
    lanes.close()


# ------------------------------------------------------------------------------------------ the server
@pytest.mark.parametrize("body", [v1, v2])
async def test_given_more_rows_than_the_cap_when_predicted_then_413_with_a_message_and_counted(estimator, body):
    app = make_app(estimator, Limits(max_rows=20))
    async with client(app) as http:
        ok = await http.post(f"/v1/models/{app.model.name}:predict", json=v1(X[:20]))
        path = f"/v1/models/{app.model.name}:predict" if body is v1 else f"/v2/models/{app.model.name}/infer"
        big = await http.post(path, json=body(X[:21]))
    assert ok.status_code == 200
    assert big.status_code == 413 and "21 rows; the limit is 20" in big.json()["error"]
    assert rejected(app, "too_many_rows") == 1


@pytest.mark.parametrize("payload, reason, message", [
    ({"instances": [{}]}, "empty", "empty record"),
    ({"instances": []}, "empty", "no rows"),
    ({"instances": [[1e300, 1, 1, 1]]}, "huge_number", "beyond"),
    ({"instances": [{"a": 1e300}]}, "huge_number", "beyond"),
    ({"instances": [{"a": 1}, {"e": 1}]}, "invalid", "unknown feature"),
    ({"instances": [[[1, 2, 3, 4]]]}, "nesting", "nested"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4], "datatype": "FP64", "data": [[[1, 2, 3, 4]]]}]}, "nesting", "nested"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, -2e15]}]}, "huge_number",
     "beyond"),
])
async def test_given_abusive_payloads_when_posted_then_400_before_model_work_counted_by_reason(estimator, payload,
                                                                                               reason, message):
    gated = Gated(estimator, gate_rows=-1)  # any predict would block: a 400 proves the model was never asked
    gated.release.set()
    app = make_app(gated, Limits(max_abs_value=1e15), names=["a", "b", "c", "d"])
    path = f"/v2/models/{app.model.name}/infer" if "inputs" in payload else f"/v1/models/{app.model.name}:predict"
    async with client(app) as http:
        response = await http.post(path, json=payload)
    assert response.status_code == 400 and message in response.json()["error"]
    assert rejected(app, reason) == 1
    assert not gated.entered.is_set()


@pytest.mark.parametrize("body, reason", [(b"[" * 5000 + b"]" * 5000, "nesting"), (b"\x00junk" * 1000, "malformed")])
async def test_given_junk_or_deep_nesting_when_posted_then_400_counted_by_reason(estimator, body, reason):
    app = make_app(estimator, Limits())
    async with client(app) as http:
        response = await http.post(f"/v1/models/{app.model.name}:predict", content=body)
    assert response.status_code == 400 and rejected(app, reason) == 1


async def test_given_a_huge_request_in_the_large_lane_when_small_ones_and_probes_arrive_then_they_are_answered():
    estimator = LogisticRegression(max_iter=1000).fit(X, Y)
    gated = Gated(estimator, gate_rows=100)
    app = make_app(gated, Limits(max_rows=10_000, large_bytes=2048, max_large_in_flight=1), Lanes(1, 1))
    predict = f"/v1/models/{app.model.name}:predict"
    async with client(app) as http:
        huge = asyncio.create_task(http.post(predict, json=v1(np.tile(X, (5, 1)))))
        while not gated.entered.is_set():
            await asyncio.sleep(0.01)
        small = await http.post(predict, json=v1(X[:3]))
        ready = await http.get("/v2/health/ready")
        second_huge = await http.post(predict, json=v1(np.tile(X, (5, 1))))
        assert not huge.done()  # everything above was answered while the huge request still held its lane
        gated.release.set()
        first = await huge
    assert small.status_code == 200 and small.json()["predictions"] == estimator.predict(X[:3]).tolist()
    assert ready.status_code == 200
    assert second_huge.status_code == 429 and second_huge.headers["retry-after"] == "1"
    assert rejected(app, "large_overloaded") == 1
    assert first.status_code == 200 and len(first.json()["predictions"]) == 750


async def test_given_the_in_flight_cap_reached_when_another_request_arrives_then_429_with_retry_after(estimator):
    gated = Gated(estimator, gate_rows=0)
    app = make_app(gated, Limits(max_in_flight=1), Lanes(2, 1))
    predict = f"/v1/models/{app.model.name}:predict"
    async with client(app) as http:
        held = asyncio.create_task(http.post(predict, json=v1(X[:2])))
        while not gated.entered.is_set():
            await asyncio.sleep(0.01)
        refused = await http.post(predict, json=v1(X[:2]))
        live = await http.get("/v2/health/live")
        gated.release.set()
        assert (await held).status_code == 200
        after = await http.post(predict, json=v1(X[:2]))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "too many requests in flight" in refused.json()["error"]
    assert live.status_code == 200 and after.status_code == 200
    assert rejected(app, "overloaded") == 1 and app.admission.in_flight == {SMALL: 0, LARGE: 0}


# ------------------------------------------------------------------------------------------ the router
@contextlib.asynccontextmanager
async def router_in_front_of(app: ServeApp, limits: Limits, max_body: int = 1 << 20):
    async with LoopbackServer(app) as upstream:
        metrics = RouterMetrics()
        state = RouterState(metrics)
        state.offer({"generation": 1, "model": app.model.name, "stable": {"url": upstream.url, "version": "v1"}}, "test")
        router = RouterApp(state, ShadowMirror(metrics.observe), metrics, max_body_bytes=max_body, limits=limits)
        async with LoopbackServer(router) as running, httpx.AsyncClient(base_url=running.url, timeout=20) as http:
            yield http


def router_rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("mlops_router_rejected_total", {"reason": reason}) or 0.0


async def test_given_the_router_full_when_requests_arrive_then_429_and_413_counted_and_health_answered(estimator):
    gated = Gated(estimator, gate_rows=0)
    app = make_app(gated, Limits())
    predict = f"/v1/models/{app.model.name}:predict"
    before = {reason: router_rejected(reason) for reason in ("overloaded", "body_too_large")}
    async with router_in_front_of(app, Limits(max_in_flight=1), max_body=4096) as http:
        held = asyncio.create_task(http.post(predict, json=v1(X[:2])))
        while not gated.entered.is_set():
            await asyncio.sleep(0.01)
        refused = await http.post(predict, json=v1(X[:2]))
        healthy = await http.get("/-/healthz")
        ready = await http.get("/-/ready")
        gated.release.set()
        assert (await held).status_code == 200
        too_big = await http.post(predict, json=v1(np.tile(X, (3, 1))))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert healthy.status_code == 200 and ready.status_code == 200
    assert too_big.status_code == 413
    assert router_rejected("overloaded") - before["overloaded"] == 1
    assert router_rejected("body_too_large") - before["body_too_large"] == 1


# ------------------------------------------------------------------------------------------ from the spec
OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_given_serving_limits_when_built_then_server_and_router_get_them_router_per_replica():
    owner = {**OWNER, "spec": {"serving": {"replicas": 3, "limits": {"maxRowsPerRequest": 500,
                                                                      "maxConcurrentRequests": 10}}}}
    server = build_serving_deployment(ServingInput(owner=owner, model="m", version="v1", role="stable", replicas=3,
                                                   artifact_uri="s3://b/models/m/v1", image="i", s3_secret="s"))
    router = build_router_deployment(RouterInput(owner=owner, model="m", image="i"))
    served = _env(server["spec"]["template"]["spec"]["containers"][0])
    routed = _env(router["spec"]["template"]["spec"]["containers"][0])
    assert served["MLOPS_LIMIT_MAX_ROWS"] == "500" and served["MLOPS_LIMIT_MAX_IN_FLIGHT"] == "10"
    assert served["MLOPS_LIMIT_MAX_LARGE_IN_FLIGHT"] == "4" and served["MLOPS_MAX_BODY_BYTES"] == str(1 << 20)
    assert routed["MLOPS_LIMIT_MAX_IN_FLIGHT"] == "30" and "MLOPS_LIMIT_MAX_ROWS" not in routed


def test_given_no_limits_and_one_replica_when_built_then_no_limit_env_so_pods_keep_their_template():
    owner = {**OWNER, "spec": {"serving": {"replicas": 1}}}
    server = build_serving_deployment(ServingInput(owner=owner, model="m", version="v1", role="stable", replicas=1,
                                                   artifact_uri="s3://b/models/m/v1", image="i", s3_secret="s"))
    router = build_router_deployment(RouterInput(owner=owner, model="m", image="i"))
    for deployment in (server, router):
        names = _env(deployment["spec"]["template"]["spec"]["containers"][0])
        assert not [n for n in names if n.startswith("MLOPS_LIMIT_")]


# ------------------------------------------------------------------------------------------ large-lane turns
async def test_given_small_requests_during_a_large_turn_when_it_ends_then_the_lane_rests_to_keep_its_share(
        monkeypatch):
    rests: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        rests.append(seconds)

    monkeypatch.setattr("mlops_operator.runtime.serve_limits.asyncio.sleep", fake_sleep)
    ticks = iter([0.0, 0.02, 1.0, 1.02])
    admission = Admission(Limits(large_bytes=10, large_share=0.5), clock=lambda: next(ticks))
    large = admission.enter(100)
    async with admission.large_turn(large):
        admission.leave(admission.enter(1))  # a small request came and went meanwhile
    async with admission.large_turn(large):
        pass  # nobody small: no rest, the lane runs flat out
    async with admission.large_turn(SMALL):
        pass  # small requests never take turns
    assert rests == [pytest.approx(0.02)]


async def test_given_two_large_requests_when_both_arrive_then_the_second_waits_for_the_first_turn():
    admission = Admission(Limits(large_bytes=10))
    order: list[str] = []
    first_in, release = asyncio.Event(), asyncio.Event()

    async def turn(name: str, hold: asyncio.Event | None) -> None:
        async with admission.large_turn(LARGE):
            order.append(f"{name} in")
            if hold is not None:
                first_in.set()
                await hold.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(turn("first", release))
    await first_in.wait()
    second = asyncio.create_task(turn("second", None))
    await asyncio.sleep(0.05)
    assert order == ["first in"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first in", "first out", "second in", "second out"]


async def test_given_the_in_flight_cap_reached_when_feedback_arrives_then_429_counted_as_overloaded(estimator):
    gated = Gated(estimator, gate_rows=0)
    app = make_app(gated, Limits(max_in_flight=1), Lanes(2, 1))
    name, version, role = app.metrics.labels
    async with client(app) as http:
        held = asyncio.create_task(http.post(f"/v1/models/{app.model.name}:predict", json=v1(X[:2])))
        while not gated.entered.is_set():
            await asyncio.sleep(0.01)
        refused = await http.post(f"/v1/models/{app.model.name}:feedback", json={"id": "x", "labels": [0]})
        gated.release.set()
        answer = await held
        accepted = await http.post(f"/v1/models/{app.model.name}:feedback",
                                   json={"id": answer.json()["id"], "labels": [0, 0]})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert accepted.status_code == 200, accepted.text
    labels = {"model": name, "version": version, "role": role, "result": "overloaded"}
    assert REGISTRY.get_sample_value("mlops_feedback_total", labels) == 1
