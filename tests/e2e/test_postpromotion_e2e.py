"""Rollback after promotion, on the real cluster with real load through the router and Prometheus scraping
the pods: a canary promotes the tracked v2 with ``analysis.postPromotion``; v1 stays warm; v2 then goes
bad (``MLOPS_FAULT=error`` set on its Deployment, see runtime/serve_fault.py) and every request to it
fails; the analysis inside the window catches it and all traffic returns to v1 at once (``RolledBack``).
``track`` does not pick v2 again until ``mlops.dev/retry``."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from mlops_operator.builders.serving import version_name
from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit

pytestmark = pytest.mark.e2e

WINDOW_SECONDS = 600


def _tracking_deployment() -> dict:
    analysis = {**kit.analysis(kit.ERROR_RATE, interval="10s", failure_limit=1),
                "postPromotion": {"duration": f"{WINDOW_SECONDS // 60}m"}}
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bc"},
            "spec": {"model": kit.MODEL, "track": {"policy": "latestReady"},
                     "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "20s"}]}},
                     "analysis": analysis, "serving": {"replicas": 1}, "traffic": {"router": "builtin"},
                     "progressDeadline": "5m"}}


def _deployment(ns: str, version: str) -> dict | None:
    return kit.get(ns, "deployment", version_name("bc", version))


def _wait_gone(ns: str, version: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _deployment(ns, version) is not None:
        assert time.monotonic() < deadline, f"{version} still has a Deployment {timeout}s after the rollback"
        time.sleep(1)


def test_given_a_promoted_canary_when_it_fails_inside_post_promotion_then_rolled_back_and_not_retracked(
        user_namespace):
    ns = user_namespace
    v1, v2 = kit.unique_names("v1", "v2")
    kit.train(ns, {v1: kit.FAST})
    base = kit.deploy_first(ns, _tracking_deployment(), first=v1)

    with kit.Load(base, pause=0.05) as load:
        kit.train(ns, {v2: kit.FAST + 1})  # newer and Ready: track makes it the candidate
        st = kit.watch(ns, lambda s: s.get("stableVersion") == v2 or s.get("phase") == "RolledBack", 400)
        assert st.get("stableVersion") == v2 and st.get("postPromotion"), st
        window = st["postPromotion"]
        assert window["version"] == v2 and window["previous"] == v1, window
        assert st["phase"] == "Progressing", st
        assert any(h["version"] == v2 and h["event"] == "promoted" for h in st["history"]), st["history"]
        warm = _deployment(ns, v1)
        assert warm is not None and (warm.get("status") or {}).get("readyReplicas") == 1, "v1 is not kept warm"
        assert "candidate" not in kit.router_document(ns), "after the promotion v2 takes all traffic"

        # v2 goes bad after its promotion: every prediction it answers is a 500 from now on.
        kubectl("-n", ns, "set", "env", f"deployment/{version_name('bc', v2)}", "MLOPS_FAULT=error")
        st = kit.watch(ns, lambda s: s.get("phase") == "RolledBack" or not s.get("postPromotion"), 300)
        rolled_back = time.time()
        assert st["phase"] == "RolledBack" and st["stableVersion"] == v1, st
        assert rolled_back < kit.epoch(window["until"]), "the rollback must happen inside the window"
        last = st["history"][-1]
        assert (last["version"], last["event"]) == (v2, "rolledBack"), st["history"]
        assert last["reason"].startswith("after promotion"), last
        assert st.get("blockedVersions") == [v2] and st.get("abortedVersion") == v2, st
        failed = [a for a in st["analysis"] if a["metric"] == "error-rate" and not a["passed"]
                  and kit.epoch(a["at"]) > kit.epoch(window["startedAt"])]
        assert len(failed) >= 2, st["analysis"]
        # All traffic is back on the very Deployment that stayed warm: nothing had to start.
        doc = kit.router_document(ns)
        assert doc["stable"]["version"] == v1 and "candidate" not in doc, doc
        again = _deployment(ns, v1)
        assert again is not None and again["metadata"]["uid"] == warm["metadata"]["uid"]
        _wait_gone(ns, v2)
        assert kit.stage(ns, v1) == "Production" and kit.stage(ns, v2) == "Archived"
        load.wait_answers(since=rolled_back + 2, timeout=30)  # enough answers after the rollback to judge them
    assert load.versions(since=rolled_back + 2) == {v1}
    assert not [s for s in load.failures() if s.at > rolled_back + 2], "requests failed after the rollback"
    events = json.loads(kubectl("-n", ns, "get", "events", "--field-selector", "reason=RolledBack", "-o",
                                "json").stdout)
    assert any(v2 in e.get("message", "") and "after promotion" in e.get("message", "") for e in events["items"])

    # Not re-tracked: v2 is still the newest Ready version, yet a fresh pass resolves track to v1.
    nonce = uuid.uuid4().hex[:8]
    kubectl("-n", ns, "annotate", "mdep", "bc", "--overwrite", f"mlops.dev/promote={nonce}")
    st = kit.watch(ns, lambda s: (s.get("handledRequests") or {}).get("promote") == nonce, 60)
    assert st["phase"] == "RolledBack" and not st.get("candidateVersion"), st
    assert st["desiredVersion"] == v1 and st["stableVersion"] == v1, st

    # Until someone asks: the retry request lets track follow v2 again.
    kit.annotate(ns, "retry")
    st = kit.watch(ns, lambda s: s.get("candidateVersion") == v2, 60)
    assert not st.get("blockedVersions"), st
