"""Label feedback on the model server: prediction ids, the bounded store, the sliding window, every refusal.

The pure parts (store, window, parsing, scoring) with a fake clock; the HTTP parts in-process (ASGI) with an
injected estimator, reading the exported series from the registry.
"""

from __future__ import annotations

import math
import uuid

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.serve_feedback import (
    CLASSIFICATION,
    REGRESSION,
    Feedback,
    FeedbackBook,
    FeedbackError,
    FeedbackWindow,
    PredictionStore,
    parse_feedback,
    score,
)
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_runtime import ModelRuntime

pytestmark = pytest.mark.unit

X, Y = load_iris(return_X_y=True)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(X, Y)


# ------------------------------------------------------------------------------------------ the store
def test_given_more_predictions_than_the_limit_when_remembered_then_the_oldest_are_forgotten():
    store = PredictionStore(max_entries=3, max_rows=100, ttl=60, clock=Clock())
    for i in range(5):
        assert store.remember(f"p{i}", np.array([i]))
    assert len(store) == 3 and store.rows == 3
    for gone in ("p0", "p1"):
        with pytest.raises(FeedbackError) as refused:
            store.take(gone)
        assert (refused.value.status, refused.value.result) == (404, "unknown_id")
    assert store.take("p4").tolist() == [4]


def test_given_a_row_budget_when_big_predictions_arrive_then_rows_stay_within_it():
    store = PredictionStore(max_entries=100, max_rows=10, ttl=60, clock=Clock())
    store.remember("a", np.zeros(4))
    store.remember("b", np.zeros(4))
    store.remember("c", np.zeros(4))  # 12 rows > 10: "a" goes
    assert store.rows == 8 and len(store) == 2
    assert not store.remember("huge", np.zeros(11))  # more than the whole budget: answered, not remembered
    assert store.rows == 8 and len(store) == 2


def test_given_a_ttl_when_time_passes_then_the_prediction_expires_and_is_refused_as_expired():
    clock = Clock()
    store = PredictionStore(max_entries=10, max_rows=100, ttl=30, clock=clock)
    store.remember("old", np.array([1.0]))
    clock.t += 31
    with pytest.raises(FeedbackError) as refused:
        store.take("old")
    assert (refused.value.status, refused.value.result) == (404, "expired_id")
    assert "expired" in str(refused.value) and len(store) == 0


def test_given_expired_predictions_when_a_new_one_is_remembered_then_they_are_dropped():
    clock = Clock()
    store = PredictionStore(max_entries=10, max_rows=100, ttl=30, clock=clock)
    store.remember("a", np.zeros(5))
    store.remember("b", np.zeros(5))
    clock.t += 31
    store.remember("c", np.zeros(1))
    assert len(store) == 1 and store.rows == 1


def test_given_an_over_long_id_when_remembered_then_it_is_not_kept():
    store = PredictionStore(clock=Clock())
    assert not store.remember("x" * 257, np.zeros(1))
    assert len(store) == 0


def test_given_a_labelled_prediction_when_labelled_again_then_409_and_its_rows_are_freed():
    store = PredictionStore(clock=Clock())
    store.remember("p", np.zeros(3))
    store.take("p")
    store.labelled("p")
    assert store.rows == 0 and len(store) == 1  # the tombstone, without rows
    with pytest.raises(FeedbackError) as refused:
        store.take("p")
    assert (refused.value.status, refused.value.result) == (409, "duplicate")


def test_given_a_reused_id_when_remembered_then_it_names_the_latest_prediction():
    store = PredictionStore(clock=Clock())
    store.remember("same", np.zeros(3))
    store.remember("same", np.ones(2))
    assert store.take("same").tolist() == [1.0, 1.0] and store.rows == 2 and len(store) == 1


# ------------------------------------------------------------------------------------------ the window
def test_given_more_rows_than_the_window_when_added_then_only_the_last_n_count():
    window = FeedbackWindow(size=4)
    assert math.isnan(window.mean()) and window.rows == 0
    window.add(np.array([0.0, 0.0, 0.0]))
    window.add(np.array([1.0, 1.0, 1.0]))  # window: 0 1 1 1
    assert window.rows == 4 and window.mean() == 0.75
    window.add(np.array([1.0] * 10))
    assert window.mean() == 1.0


# ------------------------------------------------------------------------------------------ parsing, scoring
@pytest.mark.parametrize(("doc", "message"), [
    ([1, 2], "JSON object"),
    ({"id": "p"}, '"labels" must be a non-empty list'),
    ({"id": "p", "labels": []}, '"labels" must be a non-empty list'),
    ({"labels": [1]}, 'exactly one of "id"'),
    ({"id": "p", "predictions": [1], "labels": [1]}, 'exactly one of "id"'),
    ({"id": 7, "labels": [1]}, '"id" must be a non-empty string'),
    ({"predictions": "1", "labels": [1]}, '"predictions" must be a list'),
    ({"predictions": [1, 2], "labels": [1]}, "1 labels for 2 predictions"),
    ({"predictions": [1], "labels": [1], "version": 3}, '"version" must be a string'),
])
def test_given_a_malformed_feedback_document_when_parsed_then_400_naming_the_problem(doc, message):
    with pytest.raises(FeedbackError) as refused:
        parse_feedback(doc)
    assert refused.value.status == 400 and refused.value.result == "invalid" and message in str(refused.value)


def test_given_predictions_and_labels_when_scored_then_hits_for_classes_and_absolute_errors_for_values():
    assert score(np.array([1.0, 2.0, 0.0]), np.array([1.0, 0.0, 0.0]), CLASSIFICATION).tolist() == [1.0, 0.0, 1.0]
    assert score(np.array([1.5, 2.0]), np.array([1.0, 3.0]), REGRESSION).tolist() == [0.5, 1.0]


@pytest.mark.parametrize(("labels", "numeric", "message"), [
    (["a", 1], True, "labels[0] is 'a'"),
    ([1, None], True, "labels[1] is null"),
    ([True, 1], True, "labels[0] is True"),
    ([1, "b"], False, "labels[0] is 1; this model's labels are class names"),
])
def test_given_labels_of_the_wrong_kind_when_recorded_then_400_and_nothing_enters_the_window(labels, numeric, message):
    book = FeedbackBook(PredictionStore(clock=Clock()), FeedbackWindow())
    with pytest.raises(FeedbackError) as refused:
        book.record(Feedback(labels, predictions=[1, 1] if numeric else ["a", "b"]), CLASSIFICATION, numeric)
    assert refused.value.status == 400 and message in str(refused.value)
    assert book.window.rows == 0


def test_given_string_classes_when_labelled_by_id_then_compared_as_class_names():
    book = FeedbackBook(PredictionStore(clock=Clock()), FeedbackWindow())
    book.remember("p", np.array(["cat", "dog", "cat"], dtype=object))
    scored = book.record(Feedback(["cat", "cat", "cat"], prediction_id="p"), CLASSIFICATION, numeric=False)
    assert (scored.rows, scored.total, scored.window_rows) == (3, 2.0, 3)


def test_given_a_wrong_length_by_id_when_recorded_then_400_and_the_prediction_can_still_be_labelled():
    book = FeedbackBook(PredictionStore(clock=Clock()), FeedbackWindow())
    book.remember("p", np.array([0, 1]))
    with pytest.raises(FeedbackError) as refused:
        book.record(Feedback([0], prediction_id="p"), CLASSIFICATION, numeric=True)
    assert "1 labels for a prediction of 2 rows" in str(refused.value)
    assert book.record(Feedback([0, 0], prediction_id="p"), CLASSIFICATION, numeric=True).total == 1.0


# ------------------------------------------------------------------------------------------ over HTTP
def make_app(estimator, version: str = "v1", **book) -> ServeApp:
    name = f"fb-{uuid.uuid4().hex[:8]}"  # module-level instruments: a fresh label set per test
    model = SklearnModel(name, version, runtime=ModelRuntime(estimator) if estimator is not None else None)
    feedback = FeedbackBook(PredictionStore(**book), FeedbackWindow()) if book else None
    return ServeApp(model, ServeMetrics(name, version, "stable"), max_body_bytes=4096, feedback=feedback)


def client(app: ServeApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def sample(app: ServeApp, metric: str, **labels: str) -> float | None:
    name, version, role = app.metrics.labels
    return REGISTRY.get_sample_value(metric, {"model": name, "version": version, "role": role, **labels})


def v2_body(rows: np.ndarray, request_id: str | None = None) -> dict:
    body: dict = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    return body


async def test_given_predictions_when_answered_then_v1_gains_an_id_and_v2_echoes_or_generates_one(classifier):
    app = make_app(classifier)
    name = app.model.name
    async with client(app) as http:
        v1 = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:2].tolist()})).json()
        v1_again = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:2].tolist()})).json()
        echoed = (await http.post(f"/v2/models/{name}/infer", json=v2_body(X[:2], "client-7"))).json()
        generated = (await http.post(f"/v2/models/{name}/infer", json=v2_body(X[:2]))).json()
    assert v1["predictions"] == classifier.predict(X[:2]).tolist()
    assert uuid.UUID(v1["id"]) and v1["id"] != v1_again["id"]
    assert echoed["id"] == "client-7"
    assert uuid.UUID(generated["id"])
    assert len(app.feedback.store) == 4


async def test_given_labels_by_id_through_v1_and_v2_then_accuracy_is_the_window_share_predicted_right(classifier):
    app = make_app(classifier)
    name = app.model.name
    rows = X[::15]  # 10 rows, all predicted right by this model
    truth = Y[::15].tolist()
    async with client(app) as http:
        first = (await http.post(f"/v1/models/{name}:predict", json={"instances": rows.tolist()})).json()
        second = (await http.post(f"/v2/models/{name}/infer", json=v2_body(rows, "req-2"))).json()
        right = await http.post(f"/v1/models/{name}:feedback", json={"id": first["id"], "labels": truth})
        wrong = await http.post(f"/v2/models/{name}/versions/v1/feedback",
                                json={"id": second["id"], "labels": [(t + 1) % 3 for t in truth]})
    assert right.status_code == 200 and right.json()["correct"] == 10 and right.json()["accuracy"] == 1.0
    assert wrong.status_code == 200 and wrong.json() == {
        "model_name": name, "model_version": "v1", "rows": 10, "correct": 0, "accuracy": 0.5, "window_rows": 20}
    assert sample(app, "mlops_model_accuracy") == 0.5
    assert sample(app, "mlops_feedback_window_rows") == 20
    assert sample(app, "mlops_feedback_rows_total") == 20 and sample(app, "mlops_feedback_correct_total") == 10
    assert sample(app, "mlops_feedback_total", result="ok") == 2
    assert sample(app, "mlops_requests_total", code="200") == 2  # feedback is not prediction traffic


async def test_given_explicit_predictions_for_a_regressor_then_mae_is_exported_and_no_accuracy():
    xr, yr = load_diabetes(return_X_y=True)
    app = make_app(LinearRegression().fit(xr, yr))
    async with client(app) as http:
        answer = await http.post(f"/v2/models/{app.model.name}/feedback",
                                 json={"predictions": [100.0, 200.0], "labels": [110.0, 170.0]})
    assert answer.status_code == 200 and answer.json()["mae"] == 20.0 and answer.json()["absolute_error"] == 40.0
    assert sample(app, "mlops_model_mae") == 20.0
    assert sample(app, "mlops_feedback_absolute_error_total") == 40.0 and sample(app, "mlops_feedback_rows_total") == 2
    assert sample(app, "mlops_model_accuracy") is None and sample(app, "mlops_feedback_correct_total") is None


@pytest.mark.parametrize(("body", "status", "result", "message"), [
    (b"{", 400, "invalid", "Unrecognized request format"),
    (b'{"id": "never-seen", "labels": [1]}', 404, "unknown_id", "unknown prediction id 'never-seen'"),
    (b'{"id": "PRED", "labels": [1]}', 400, "invalid", "1 labels for a prediction of 3 rows"),
    (b'{"id": "PRED", "labels": [1, "two", 3]}', 400, "invalid", "labels[1] is 'two'"),
    (b'{"id": "PRED", "labels": [1, null, 3]}', 400, "invalid", "labels[1] is null"),
    (b'{"predictions": [1, 2], "labels": [1]}', 400, "invalid", "1 labels for 2 predictions"),
    (b'{"predictions": [1], "labels": [1], "version": "v9"}', 400, "invalid", "serves version 'v1', not 'v9'"),
    (b'{"id": "PRED", "labels": [' + b"1," * 3000 + b"1]}", 413, "too_large", "exceeds the limit of 4096 bytes"),
])
async def test_given_bad_feedback_when_posted_then_4xx_naming_the_problem_counted_and_the_server_keeps_serving(
        classifier, body, status, result, message):
    app = make_app(classifier)
    name = app.model.name
    async with client(app) as http:
        predicted = (await http.post(f"/v1/models/{name}:predict", json={"instances": X[:3].tolist()})).json()
        answer = await http.post(f"/v1/models/{name}:feedback", content=body.replace(b"PRED", predicted["id"].encode()))
        after = await http.post(f"/v1/models/{name}:feedback", json={"id": predicted["id"], "labels": [0, 0, 0]})
    assert answer.status_code == status and message in answer.json()["error"]
    assert sample(app, "mlops_feedback_total", result=result) == 1
    assert after.status_code == 200  # the refused feedback changed nothing: the prediction still takes labels
    assert sample(app, "mlops_feedback_window_rows") == 3


async def test_given_an_expired_id_when_labelled_then_404_counted_as_expired(classifier):
    clock = Clock()
    app = make_app(classifier, ttl=5, clock=clock)
    async with client(app) as http:
        predicted = (await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": X[:1].tolist()})).json()
        clock.t += 6
        answer = await http.post(f"/v1/models/{app.model.name}:feedback", json={"id": predicted["id"], "labels": [0]})
    assert answer.status_code == 404 and "expired" in answer.json()["error"]
    assert sample(app, "mlops_feedback_total", result="expired_id") == 1


async def test_given_a_model_not_loaded_when_feedback_arrives_then_503_not_ready(classifier):
    app = make_app(None)
    async with client(app) as http:
        answer = await http.post(f"/v1/models/{app.model.name}:feedback", json={"predictions": [1], "labels": [1]})
        wrong_method = await http.get(f"/v1/models/{app.model.name}:feedback")
    assert answer.status_code == 503 and sample(app, "mlops_feedback_total", result="not_ready") == 1
    assert wrong_method.status_code == 405


async def test_given_many_predictions_when_served_then_the_store_stays_within_its_bounds(classifier):
    app = make_app(classifier, max_entries=5, max_rows=12)
    async with client(app) as http:
        for _ in range(20):
            assert (await http.post(f"/v1/models/{app.model.name}:predict", json={"instances": X[:4].tolist()})).status_code == 200
    assert len(app.feedback.store) == 3 and app.feedback.store.rows == 12
