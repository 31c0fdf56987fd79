"""Label feedback on the real cluster, all through the ModelDeployment's entry Service (the builtin router):

1. a served version answers predictions with ids; true labels sent back by id (V1 and V2) are scored by it,
   bad feedback gets a 4xx naming the problem, and the real Prometheus (scraping the pods) has
   `mlops_model_accuracy` with the value those labels give, labelled namespace, model, version and role;
2. a canary whose analysis includes the builtin `accuracy` check: feedback by id reaches whichever version
   made each prediction (the router fans it out), the operator measures accuracy per version from
   Prometheus, records it in status and promotes;
3. after a promotion, predictions the replaced version made are still labelled by id through the entry
   Service while it stays warm (the router asks the versions that just left it);
4. wrong labels after an accuracy-checked promotion roll it back inside the post-promotion window.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.prometheus_kit import query as prometheus, wait_series

pytestmark = pytest.mark.e2e

X, Y = kit.X, kit.Y
ACCURACY = {"name": "accuracy", "builtin": "accuracy", "min": 0.9}


def v2_infer(base: str, rows: list[list[float]], request_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                                        "data": rows}]}
    if request_id:
        body["id"] = request_id
    return httpx.post(f"{base}/v2/models/{kit.MODEL}/infer", json=body, timeout=10)


def test_given_a_served_version_when_labels_are_fed_back_then_prometheus_has_its_accuracy(user_namespace, cluster_env):
    ns, prom = user_namespace, cluster_env["PROMETHEUS_URL"]
    (v1,) = kit.unique_names("v1")
    kit.train(ns, {v1: kit.FAST})
    base = kit.deploy_first(ns, kit.deployment(v1, {"type": "Recreate"}, kit.analysis(kit.ERROR_RATE)))

    rows, truth = X[:20].tolist(), Y[:20].tolist()
    by_v1 = httpx.post(f"{base}/v1/models/{kit.MODEL}:predict", json={"instances": rows[:10]}, timeout=10)
    by_v2 = v2_infer(base, rows[10:], request_id="e2e-batch-2")
    assert by_v1.status_code == 200 and by_v2.status_code == 200, (by_v1.text, by_v2.text)
    assert by_v1.json()["id"] and by_v2.json()["id"] == "e2e-batch-2"
    predicted = by_v1.json()["predictions"] + by_v2.json()["outputs"][0]["data"]
    labels = truth[:10] + [1 - t for t in truth[10:]]  # the second batch labelled wrong on purpose
    expected = sum(p == t for p, t in zip(predicted, labels)) / 20

    first = httpx.post(f"{base}/v1/models/{kit.MODEL}:feedback", json={"id": by_v1.json()["id"], "labels": labels[:10]},
                       timeout=10)
    second = httpx.post(f"{base}/v2/models/{kit.MODEL}/feedback", json={"id": "e2e-batch-2", "labels": labels[10:]},
                        timeout=10)
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    assert second.headers["x-mlops-version"] == v1 and second.json()["accuracy"] == pytest.approx(expected)
    # Bad feedback through the entry Service: a 4xx that names the problem, and the server keeps serving.
    bad = {
        "unknown id": ({"id": "never-predicted", "labels": [1]}, 404, "unknown prediction id"),
        "already labelled": ({"id": "e2e-batch-2", "labels": labels[10:]}, 409, "already has labels"),
        "non-numeric": ({"predictions": [1], "labels": ["yes"]}, 400, "labels[0] is 'yes'"),
        "wrong length": ({"predictions": [1, 0], "labels": [1]}, 400, "1 labels for 2 predictions"),
    }
    for what, (body, status, message) in bad.items():
        answer = httpx.post(f"{base}/v2/models/{kit.MODEL}/feedback", json=body, timeout=10)
        assert answer.status_code == status and message in answer.json()["error"], (what, answer.text)
    oversized = httpx.post(f"{base}/v1/models/{kit.MODEL}:feedback", timeout=10,
                           content=b'{"id": "x", "labels": [' + b"1," * 600_000 + b"1]}")
    assert oversized.status_code == 413, oversized.text
    assert v2_infer(base, rows[:1]).status_code == 200

    accuracy = wait_series(prom, f'mlops_model_accuracy{{namespace="{ns}"}}',
                           lambda r: len(r) == 1 and float(r[0]["value"][1]) == pytest.approx(expected))
    labels_seen = accuracy[0]["metric"]
    assert {k: labels_seen.get(k) for k in ("namespace", "model", "version")} == {
        "namespace": ns, "model": kit.MODEL, "version": v1}, labels_seen
    assert labels_seen.get("role"), labels_seen  # like every server series (the pod's MLOPS_ROLE)
    counted = wait_series(prom, f'mlops_feedback_total{{namespace="{ns}",result="unknown_id"}}',
                          lambda r: len(r) == 1 and float(r[0]["value"][1]) >= 1)
    assert counted[0]["metric"]["version"] == v1
    # The shipped MLOpsAccuracyLow expression now has a series to fire on (half the labels said "wrong").
    assert expected < 0.85
    rule = prometheus(prom, f'min by (namespace, model, version) (mlops_model_accuracy{{namespace="{ns}"}}) < 0.85')
    assert [r["metric"] for r in rule] == [{"namespace": ns, "model": kit.MODEL, "version": v1}], rule


def test_given_a_canary_with_an_accuracy_check_when_labels_flow_then_each_version_is_measured_and_promoted(
        user_namespace, cluster_env):
    ns, prom = user_namespace, cluster_env["PROMETHEUS_URL"]
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": "10s"}, {"weight": 60, "pause": "10s"}]}}
    base = kit.deploy_first(ns, kit.deployment(v1, canary, kit.analysis(kit.ERROR_RATE, ACCURACY, failure_limit=2)))

    with kit.LabelledLoad(base) as load:
        kit.patch_spec(ns, {"version": v2})
        st = kit.watch(ns, lambda s: s.get("phase") in {"RolledBack", "Failed"} or (
            s.get("stableVersion") == v2 and s.get("phase") == "Succeeded"), 420)
    assert st["stableVersion"] == v2 and st["phase"] == "Succeeded", st
    measured = [a for a in st.get("analysis", []) if a["metric"] == "accuracy"]
    assert any(a["passed"] and a.get("samples", 0) >= 5 and a["value"] >= 0.9 for a in measured), st.get("analysis")
    # Every prediction's labels reached the version that made it. The one exception is a prediction v1 made
    # just before the promotion took it out of the router, labelled after its pods had gone: 410, the router
    # could no longer ask the version that left.
    assert {version for version, _ in load.answers} >= {v1, v2}, {version for version, _ in load.answers}
    assert len(load.answers) > 100 and {code for _, code in load.answers} <= {200, 410}, load.answers[:5]
    assert sum(code == 410 for _, code in load.answers) <= 2, [a for a in load.answers if a[1] != 200]
    # v1's pods are gone once v2 is promoted, and Prometheus marks their series stale at once: an instant
    # query no longer sees them, so ask for each version's highest count over the last minutes instead.
    for version in (v1, v2):
        wait_series(prom, f'max_over_time(mlops_feedback_rows_total{{namespace="{ns}",version="{version}"}}[15m])',
                    lambda r: sum(float(s["value"][1]) for s in r) > 0)
    assert json.loads(kubectl("-n", ns, "get", "mv", v2, "-o", "json").stdout)["status"].get("stage") == "Production"


def test_given_wrong_labels_after_an_accuracy_checked_promotion_then_rolled_back_inside_the_window_and_not_retracked(
        user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    channel = {"channel": f"acc-{v1}"}
    kit.train(ns, {v1: kit.FAST}, labels={v1: channel})
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}},
                        {**kit.analysis(kit.ERROR_RATE, ACCURACY, failure_limit=1), "postPromotion": {"duration": "10m"}})
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = kit.deploy_first(ns, md, first=v1)

    with kit.LabelledLoad(base) as load:
        kit.train(ns, {v2: 60}, labels={v2: channel})  # newer and Ready on the channel: canaried, then promoted
        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 or s.get("phase") in {"RolledBack", "Failed"}, 420)
        assert st.get("stableVersion") == v2 and st.get("postPromotion", {}).get("previous") == v1, st
        promoted_on = [a for a in st.get("analysis", []) if a["metric"] == "accuracy" and a["passed"]]
        assert promoted_on, st.get("analysis")  # the canary was judged on labels sent through the entry Service
        window = st["postPromotion"]

        load.wrong = True  # the labels now say v2 is wrong: its accuracy falls
        st = kit.watch(ns, lambda s: s.get("phase") == "RolledBack" or not s.get("postPromotion"), 300)
        rolled_back = time.time()
    assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
    assert rolled_back < kit.epoch(window["until"]), "rolled back inside the post-promotion window"
    failed = [a for a in st["analysis"] if a["metric"] == "accuracy" and not a["passed"]
              and kit.epoch(a["at"]) > kit.epoch(window["startedAt"])]
    assert any(a.get("value") is not None and a["value"] < 0.9 for a in failed), st["analysis"]
    last = st["history"][-1]
    assert (last["version"], last["event"]) == (v2, "rolledBack") and last["reason"].startswith("after promotion"), last
    assert st.get("blockedVersions") == [v2], st
    # Not re-tracked: v2 is still the newest Ready version of the channel, yet a fresh pass stays on v1.
    nonce = kit.annotate(ns, "promote")
    # Handled, not merely not yet seen: a pass that never ran would leave v1 in place too.
    st = kit.watch(ns, lambda s: (s.get("handledRequests") or {}).get("promote") == nonce, 60)
    assert st["desiredVersion"] == v1 and st["stableVersion"] == v1 and not st.get("candidateVersion"), st


def test_given_a_promotion_when_the_replaced_version_made_a_prediction_then_its_labels_still_reach_it_by_id(
        user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST, v2: 60})
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}},
                        {**kit.analysis(kit.ERROR_RATE), "postPromotion": {"duration": "10m"}})
    base = kit.deploy_first(ns, md)
    rows, truth = X[:10].tolist(), Y[:10].tolist()
    before = v2_infer(base, rows, request_id="made-by-v1")
    assert before.status_code == 200 and before.json()["model_version"] == v1, before.text

    with kit.Load(base):  # the canary's analysis needs traffic
        kit.patch_spec(ns, {"version": v2})
        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 or s.get("phase") in {"RolledBack", "Failed"}, 420)
    assert st.get("stableVersion") == v2 and (st.get("postPromotion") or {}).get("previous") == v1, st
    assert "candidate" not in kit.router_document(ns) and kit.router_document(ns)["stable"]["version"] == v2

    # v1 is out of the router (kept warm for the window): its prediction is labelled through the entry Service.
    fed = httpx.post(f"{base}/v2/models/{kit.MODEL}/feedback", json={"id": "made-by-v1", "labels": truth}, timeout=10)
    assert fed.status_code == 200, fed.text
    assert fed.headers["x-mlops-variant"] == "retired" and fed.headers["x-mlops-version"] == v1, fed.headers
    assert fed.json()["model_version"] == v1 and fed.json()["rows"] == 10
    again = httpx.post(f"{base}/v2/models/{kit.MODEL}/feedback", json={"id": "made-by-v1", "labels": truth}, timeout=10)
    assert again.status_code == 409 and "already has labels" in again.json()["error"], again.text
    unknown = httpx.post(f"{base}/v2/models/{kit.MODEL}/feedback", json={"id": "never", "labels": [1]}, timeout=10)
    assert unknown.status_code == 404, unknown.text  # v1 is reachable and does not know it either
