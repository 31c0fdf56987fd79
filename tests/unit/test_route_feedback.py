"""Label feedback through the router: the pure routing decisions, then real model servers behind a real router.

Two servers with different models (stable predicts class 0 for everything, the candidate class 1) make it
visible which one scored a feedback: only the one that made the prediction knows its id.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier

from mlops_operator.runtime import route_feedback
from mlops_operator.runtime.route_config import parse_config
from mlops_operator.runtime.route_feedback import Answer, pick, scored_rows, targets
from tests.unit.test_route_proxy import MODEL, closed_port, router, server

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

X, Y = load_iris(return_X_y=True)


def config(candidate: bool = True, shadow: bool = False) -> dict:
    doc: dict = {"generation": 1, "model": MODEL, "stable": {"url": "http://s:8080", "version": "v1"}}
    if candidate:
        doc["candidate"] = {"url": "http://c:8080", "version": "v2", "weight": 50}
    if shadow:
        doc["shadow"] = {"url": "http://sh:8080", "version": "v3", "percent": 100}
    return doc


# ------------------------------------------------------------------------------------------ pure decisions
@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", f"/v1/models/{MODEL}:feedback", True),
    ("POST", f"/v2/models/{MODEL}/feedback", True),
    ("POST", f"/v2/models/{MODEL}/versions/v2/feedback", True),
    ("GET", f"/v2/models/{MODEL}/feedback", False),
    ("POST", f"/v1/models/{MODEL}:predict", False),
    ("POST", f"/v2/models/{MODEL}/infer", False),
])
def test_given_a_request_when_classified_then_only_posted_feedback_paths_are_feedback(method, path, expected):
    assert route_feedback.is_feedback(method, path) is expected


@pytest.mark.parametrize(("doc", "candidate", "variants", "error"), [
    ({"id": "p", "labels": [1]}, True, ("stable", "candidate"), None),
    ({"id": "p", "labels": [1]}, False, ("stable",), None),
    ({"predictions": [1], "labels": [1]}, True, ("stable",), None),
    ({"predictions": [1], "labels": [1], "version": "v2"}, True, ("candidate",), None),
    ({"predictions": [1], "labels": [1], "version": "v3"}, True, ("shadow",), None),
    ({"predictions": [1], "labels": [1], "version": "v9"}, True, (), "version 'v9' is not served"),
    ("not an object", True, ("stable",), None),
])
def test_given_feedback_when_routed_then_by_id_to_every_primary_else_to_the_named_version_or_stable(
        doc, candidate, variants, error):
    where = targets(httpx.Request("POST", "/", json=doc).content, parse_config(config(candidate, shadow=True)))
    assert where.variants == variants
    assert (where.error is None) if error is None else (error in where.error and "candidate: v2" in where.error)


def test_given_a_body_that_is_not_json_when_routed_then_stable_answers_it():
    assert targets(b"{", parse_config(config())).variants == ("stable",)


@pytest.mark.parametrize(("statuses", "chosen"), [
    ([404, 200], 1),      # the variant that made the prediction
    ([200, 404], 0),
    ([404, 400], 1),      # it knew the id and refused the labels: its reason is the useful one
    ([404, 409], 1),
    ([404, 502], 1),      # it may have been the unreachable one: worth a retry, not a definitive 404
    ([503, 404], 0),
    ([404, 404], 0),      # nobody knows it
    ([400, 400], 0),      # a body both refuse: stable's words
])
def test_given_variant_answers_when_picked_then_2xx_then_a_refusal_then_a_failure_then_404(statuses, chosen):
    answers = [Answer(v, s, b"") for v, s in zip(("stable", "candidate"), statuses)]
    assert pick(answers) is answers[chosen]


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"rows": 4, "correct": 3}', (4, 3, None)),
    (b'{"rows": 4, "absolute_error": 1.5}', (4, None, 1.5)),
    (b'{"rows": 4, "absolute_error": 2}', (4, None, 2.0)),
    (b'{"rows": 4, "absolute_error": -1}', (4, None, None)),
    (b'{"rows": 4, "absolute_error": true}', (4, None, None)),
    (b'{"rows": 4, "correct": 9}', (4, None, None)),
    (b'{"rows": "4"}', (0, None, None)),
    (b"nonsense", (0, None, None)),
])
def test_given_a_server_answer_when_read_then_its_scored_rows_or_nothing(body, expected):
    assert scored_rows(body) == expected


# ------------------------------------------------------------------------------------------ real servers
def constant(value: int) -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=value).fit(X, Y)


def routing(stable: str, candidate: str | None, versions: tuple[str, str], weight: float = 50) -> dict:
    doc: dict = {"generation": 1, "model": MODEL, "stable": {"url": stable, "version": versions[0]}}
    if candidate:
        doc["candidate"] = {"url": candidate, "version": versions[1], "weight": weight}
    return doc


def versions() -> tuple[str, str]:
    run = uuid.uuid4().hex[:6]  # module-level instruments: fresh version labels per test
    return f"v1-{run}", f"v2-{run}"


def served_rows(version: str) -> float:
    return REGISTRY.get_sample_value("mlops_feedback_rows_total", {"model": MODEL, "version": version, "role": "test"}) or 0.0


def router_rows(variant: str, metric: str = "mlops_router_feedback_rows_total") -> float:
    return REGISTRY.get_sample_value(metric, {"variant": variant}) or 0.0


async def test_given_a_canary_when_feedback_by_id_arrives_then_the_version_that_predicted_scores_it():
    v1, v2 = versions()
    async with server(constant(0), v1) as stable, server(constant(1), v2) as candidate, \
            router(routing(stable.url, candidate.url, (v1, v2))) as (_, client):
        rows_before = router_rows("candidate")
        correct_before = router_rows("candidate", "mlops_router_feedback_correct_total")
        answers = [await client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
            {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": X[:2].ravel().tolist()}]})
            for _ in range(4)]
        by_version: dict[str, list[str]] = {}
        for answer in answers:
            assert answer.status_code == 200
            by_version.setdefault(answer.json()["model_version"], []).append(answer.json()["id"])
        assert set(by_version) == {v1, v2}  # the 50 % split sent two to each
        feedback = [await client.post(f"/v2/models/{MODEL}/feedback", json={"id": i, "labels": [1, 1]})
                    for i in by_version[v2]]
        v1_feedback = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": by_version[v1][0], "labels": [1, 1]})
        unknown = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": "nobody-predicted-this", "labels": [1]})
        duplicate = await client.post(f"/v2/models/{MODEL}/feedback", json={"id": by_version[v2][0], "labels": [1, 1]})
    for answer in feedback:  # the candidate predicted 1, the labels say 1
        assert answer.status_code == 200 and answer.headers["x-mlops-version"] == v2 and answer.json()["correct"] == 2
    assert v1_feedback.status_code == 200 and v1_feedback.headers["x-mlops-variant"] == "stable"
    assert v1_feedback.json()["correct"] == 0  # stable predicted 0
    assert served_rows(v2) == 4 and served_rows(v1) == 2  # each version scored only its own predictions
    assert unknown.status_code == 404 and "unknown prediction id" in unknown.json()["error"]
    assert duplicate.status_code == 409 and duplicate.headers["x-mlops-variant"] == "candidate"
    assert router_rows("candidate") - rows_before == 4
    assert router_rows("candidate", "mlops_router_feedback_correct_total") - correct_before == 4


async def test_given_explicit_predictions_when_sent_to_the_router_then_stable_or_the_named_version_scores_them():
    v1, v2 = versions()
    async with server(constant(0), v1) as stable, server(constant(1), v2) as candidate, \
            router(routing(stable.url, candidate.url, (v1, v2))) as (_, client):
        default = await client.post(f"/v1/models/{MODEL}:feedback", json={"predictions": [1, 0], "labels": [1, 1]})
        named = await client.post(f"/v1/models/{MODEL}:feedback",
                                  json={"predictions": [1, 0, 2], "labels": [1, 1, 2], "version": v2})
        nowhere = await client.post(f"/v1/models/{MODEL}:feedback",
                                    json={"predictions": [1], "labels": [1], "version": "v-gone"})
    assert default.status_code == 200 and default.headers["x-mlops-version"] == v1 and default.json()["correct"] == 1
    assert named.status_code == 200 and named.headers["x-mlops-version"] == v2 and named.json()["correct"] == 2
    assert served_rows(v1) == 2 and served_rows(v2) == 3
    assert nowhere.status_code == 404 and "'v-gone' is not served" in nowhere.json()["error"]


async def test_given_an_unreachable_candidate_when_stable_does_not_know_the_id_then_502_to_retry_not_404():
    v1, v2 = versions()
    unreachable = f"http://127.0.0.1:{closed_port()}"
    async with server(constant(0), v1) as stable, router(routing(stable.url, unreachable, (v1, v2), weight=0)) as (_, client):
        predicted = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": X[:1].tolist()})
        known = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": predicted.json()["id"], "labels": [0]})
        unknown = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": "maybe-the-candidate's", "labels": [0]})
        again = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": predicted.json()["id"], "labels": [0]})
    assert known.status_code == 200 and known.json()["correct"] == 1
    assert unknown.status_code == 502 and "upstream candidate failed" in unknown.json()["error"]
    assert again.status_code == 409  # labelled already: the server that knew the id says so, not the 502


def counts() -> dict[str, float]:
    labels = {"variant": "stable", "code": "400"}
    return {"requests": REGISTRY.get_sample_value("mlops_router_requests_total", labels) or 0.0,
            "feedback": REGISTRY.get_sample_value("mlops_router_feedback_total", labels) or 0.0}


async def test_given_feedback_when_routed_then_it_is_not_counted_as_prediction_traffic():
    v1, v2 = versions()
    async with server(constant(0), v1) as stable, router(routing(stable.url, None, (v1, v2))) as (_, client):
        before = counts()
        refused = await client.post(f"/v1/models/{MODEL}:feedback", json={"predictions": [1], "labels": ["x"]})
        after = counts()
    assert refused.status_code == 400 and "labels[0] is 'x'" in refused.json()["error"]
    assert after["requests"] == before["requests"] and after["feedback"] == before["feedback"] + 1


# ------------------------------------------------------------------------------------------ retired versions
class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def promoted(generation: int, stable: str, candidate: str | None = None) -> dict:
    """A router document whose stable (and candidate) is version ``stable`` (``candidate``) at http://<version>."""
    doc: dict = {"generation": generation, "model": MODEL, "stable": {"url": f"http://{stable}:8080", "version": stable}}
    if candidate:
        doc["candidate"] = {"url": f"http://{candidate}:8080", "version": candidate, "weight": 50}
    return doc


def test_given_a_promotion_then_the_replaced_stable_is_retired_for_the_ttl_only():
    clock = Clock()
    retired = route_feedback.RetiredVersions(ttl=600, clock=clock)
    retired.note(None, parse_config(promoted(1, "v1")))
    retired.note(parse_config(promoted(1, "v1")), parse_config(promoted(2, "v1", "v2")))  # the canary starts
    assert retired.upstreams() == []
    retired.note(parse_config(promoted(2, "v1", "v2")), parse_config(promoted(3, "v2")))  # v2 promoted
    assert [(u.version, u.url) for u in retired.upstreams()] == [("v1", "http://v1:8080")]
    clock.t += 599
    assert [u.version for u in retired.upstreams()] == ["v1"]
    clock.t += 1
    assert retired.upstreams() == []


def test_given_many_rollouts_then_only_the_latest_retired_versions_are_kept_and_a_returning_one_is_live_again():
    retired = route_feedback.RetiredVersions(ttl=600, limit=2, clock=Clock())
    for generation, (before, after) in enumerate([("v1", "v2"), ("v2", "v3"), ("v3", "v4")], start=1):
        retired.note(parse_config(promoted(generation, before)), parse_config(promoted(generation + 1, after)))
    assert [u.version for u in retired.upstreams()] == ["v3", "v2"]  # newest first, v1 pushed out
    retired.note(parse_config(promoted(4, "v4")), parse_config(promoted(5, "v3", "v4")))  # v3 routed again
    assert [u.version for u in retired.upstreams()] == ["v2"]
    off = route_feedback.RetiredVersions(ttl=0, clock=Clock())
    off.note(parse_config(promoted(1, "v1")), parse_config(promoted(2, "v2")))
    assert off.upstreams() == []


def test_given_answers_from_retired_versions_then_they_never_hide_the_live_ones_and_unreachable_ones_make_410():
    delivered = Answer(route_feedback.RETIRED, 200, b"{}", "v1")
    assert pick([Answer("stable", 404, b""), delivered]) is delivered
    refused = Answer(route_feedback.RETIRED, 409, b"{}", "v1")
    assert pick([Answer("stable", 404, b""), refused]) is refused
    live_failure = Answer("stable", 503, b"")
    assert pick([live_failure, Answer(route_feedback.RETIRED, 502, b"", "v1")]) is live_failure
    known = Answer("stable", 200, b"{}")
    assert pick([known, Answer(route_feedback.RETIRED, 502, b"", "v1")]) is known
    unknown = Answer("stable", 404, b"")
    assert pick([unknown, Answer(route_feedback.RETIRED, 404, b"", "v1")]) is unknown
    gone = pick([unknown, Answer(route_feedback.RETIRED, 502, b"", "v1")])
    assert (gone.status, gone.variant, gone.version) == (410, route_feedback.RETIRED, "v1")
    assert "v1, which left this model deployment recently, can no longer be reached" in gone.body.decode()


async def test_given_a_promotion_when_the_replaced_stable_made_the_prediction_then_its_feedback_still_reaches_it():
    v1, v2 = versions()
    async with server(constant(0), v1) as old, server(constant(1), v2) as new, \
            router(routing(old.url, new.url, (v1, v2))) as (app, client):
        ids: dict[str, str] = {}
        while len(ids) < 2:  # one prediction by each version
            answer = await client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
                {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": X[:3].ravel().tolist()}]})
            ids.setdefault(answer.json()["model_version"], answer.json()["id"])
        app.state.offer({**routing(new.url, None, (v2, v1)), "generation": 2}, "test")  # v2 promoted, v1 leaves
        retired_rows = router_rows(route_feedback.RETIRED)
        by_old = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": ids[v1], "labels": [0, 0, 1]})
        by_new = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": ids[v2], "labels": [1, 1, 1]})
        unknown = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": "nobody-predicted-this", "labels": [1]})
    assert by_old.status_code == 200 and by_old.json()["correct"] == 2, by_old.text
    assert by_old.headers["x-mlops-variant"] == "retired" and by_old.headers["x-mlops-version"] == v1
    assert by_new.status_code == 200 and by_new.headers["x-mlops-variant"] == "stable" and by_new.json()["correct"] == 3
    assert unknown.status_code == 404 and "unknown prediction id" in unknown.json()["error"]
    assert served_rows(v1) == 3 and router_rows(route_feedback.RETIRED) - retired_rows == 3


async def test_given_a_retired_version_that_is_gone_when_no_live_version_knows_the_id_then_410_naming_it():
    v1, v2 = versions()
    gone = f"http://127.0.0.1:{closed_port()}"
    async with server(constant(1), v2) as new, router(routing(gone, None, (v1, v2))) as (app, client):
        app.state.offer({**routing(new.url, None, (v2, v1)), "generation": 2}, "test")
        before = REGISTRY.get_sample_value("mlops_router_feedback_total", {"variant": "retired", "code": "410"}) or 0.0
        predicted = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": X[:1].tolist()})
        known = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": predicted.json()["id"], "labels": [1]})
        lost = await client.post(f"/v1/models/{MODEL}:feedback", json={"id": "made-by-the-old-version", "labels": [1]})
    assert known.status_code == 200 and known.headers["x-mlops-version"] == v2  # a gone version costs nothing
    assert lost.status_code == 410 and lost.headers["x-mlops-version"] == v1, lost.text
    assert f"{v1}, which left this model deployment recently, can no longer be reached" in lost.json()["error"]
    assert REGISTRY.get_sample_value("mlops_router_feedback_total", {"variant": "retired", "code": "410"}) == before + 1
