"""Post-promotion window (``spec.analysis.postPromotion``), for every strategy: the promoted version stays
under analysis with the previous stable kept warm; a failure moves all traffic back at once (RolledBack),
a passed window scales the previous version down (Succeeded). Restarts resume from status."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from mlops_operator.logic.rollout import analysis_request, decide
from mlops_operator.logic.rollout.state import AnalysisResults, MetricResult, Role, Routes, parse_time
from tests.unit.rollout_world import World, condition, history_events, passing, serving, spec, version

pytestmark = pytest.mark.unit

WINDOW = "5m"
ANALYSIS = {"interval": "30s", "failureLimit": 1, "minSamples": 50, "postPromotion": {"duration": WINDOW}}
STRATEGIES = {
    "Recreate": {"type": "Recreate"},
    "Canary": {"type": "Canary", "canary": {"steps": [{"weight": 20, "pause": "1m"}, {"weight": 50, "pause": "1m"}]}},
    "BlueGreen": {"type": "BlueGreen", "blueGreen": {"autoPromote": True, "previewReplicas": 1,
                                                     "scaleDownDelay": "30s"}},
    "Shadow": {"type": "Shadow", "shadow": {"mirrorPercent": 50, "duration": "2m", "minAgreement": 0.9,
                                            "autoPromote": True}},
}
ALL = pytest.mark.parametrize("strategy", list(STRATEGIES))


def md_for(strategy: str, target: str = "v2", analysis: dict | None = None, **fields):
    body = {"strategy": STRATEGIES[strategy], "analysis": analysis or ANALYSIS, **fields}
    if "track" not in body:
        body["version"] = target
    return spec(**body)


def promoted(strategy: str, **fields) -> tuple[World, object]:
    """v1 serving, v2 rolled out with ``strategy`` until its promotion opened the window."""
    md = md_for(strategy, **fields)
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    return world, md


def window(world: World) -> dict:
    return world.status["postPromotion"]


# ------------------------------------------------------------------------------------------ pass


@ALL
def test_given_a_promotion_with_post_promotion_when_the_window_passes_then_succeeded_and_previous_scaled_down(strategy):
    world, md = promoted(strategy)
    opened = world.plans[-1]
    assert window(world)["version"] == "v2" and window(world)["previous"] == "v1"
    assert parse_time(window(world)["until"]) - parse_time(window(world)["startedAt"]) == timedelta(minutes=5)
    assert world.phase == "Progressing" and condition(world.status, "PostPromotionAnalysis")["status"] == "True"
    assert opened.routes == Routes("v2")
    assert history_events(world.status)[-1] == ("v2", "promoted")
    world.tick(md)
    assert world.versions["v2"].stage == "Production"
    assert world.versions["v1"].stage == "Production", "the warm version may serve again: retention keeps it"
    measured_before = len(world.measured)

    world.until(md, lambda w: w.phase == "Succeeded")
    inside = [p for p in world.plans if p.status.get("postPromotion")]
    # The previous version is planned at full replicas, routed nothing and never deleted inside the window.
    assert all({(w.version, w.replicas) for w in p.workloads} == {("v2", 1), ("v1", 1)} for p in inside)
    assert all(p.routes == Routes("v2") and "v1" not in p.delete for p in inside)
    window_runs = world.measured[measured_before:]
    assert window_runs and all(r.version == "v2" and r.role == Role.STABLE and r.carries_traffic for r in window_runs)
    assert {c.name for c in window_runs[0].checks} == {"error-rate", "latency-p99"}  # no shadow agreement
    assert world.now - timedelta(seconds=10) >= parse_time(inside[0].status["postPromotion"]["until"])
    assert "postPromotion" not in world.status and world.status["stableVersion"] == "v2"
    assert condition(world.status, "PostPromotionAnalysis")["reason"] == "Passed"
    assert "PostPromotionPassed" in [e.reason for e in world.plans[-1].events]
    world.tick(md)
    assert "v1" not in world.workloads and world.phase == "Succeeded"
    assert world.versions["v2"].stage == "Production" and world.versions["v1"].stage == "Archived"


def test_given_the_first_version_when_promoted_then_there_is_no_window_since_nothing_was_replaced():
    md = md_for("Canary", target="v1")
    world = World(versions={"v1": version("v1")})
    world.until(md, lambda w: w.phase == "Succeeded")
    assert all("postPromotion" not in p.status for p in world.plans)


def test_given_no_post_promotion_when_promoted_then_it_succeeds_at_once_as_before():
    world, md = promoted("Canary", analysis={k: v for k, v in ANALYSIS.items() if k != "postPromotion"})
    assert "postPromotion" not in world.status and world.phase == "Succeeded"


# ------------------------------------------------------------------------------------------ failure


@ALL
def test_given_a_window_when_analysis_fails_then_all_traffic_returns_to_the_warm_previous_version_at_once(strategy):
    world, md = promoted(strategy)
    until = parse_time(window(world)["until"])
    world.run(md, 3)
    world.metrics = passing(value=0.5)  # 50 % errors, p99 0.5 s
    world.until(md, lambda w: w.phase == "RolledBack", limit=20)
    rollback = world.plans[-1]
    assert world.now < until, "rolled back inside the window"
    assert rollback.routes == Routes("v1") and world.status["stableVersion"] == "v1"
    assert {w.version for w in rollback.workloads} == {"v1"} and world.is_up("v1"), "v1 was kept warm: Ready now"
    assert rollback.delete == ()  # traffic first: the router still sent everything to v2 when observed
    assert [e.reason for e in rollback.events][-2:] == ["AnalysisFailed", "RolledBack"]
    last = world.status["history"][-1]
    assert (last["version"], last["event"]) == ("v2", "rolledBack") and last["reason"].startswith("after promotion")
    assert world.status["abortedVersion"] == "v2" and world.status["blockedVersions"] == ["v2"]
    assert "postPromotion" not in world.status
    assert condition(world.status, "PostPromotionAnalysis")["reason"] == "Failed"
    world.tick(md)
    assert world.plans[-1].delete == ("v2",) and world.phase == "RolledBack"
    assert world.versions["v1"].stage == "Production" and world.versions["v2"].stage == "Archived"
    world.run(md, 30)
    assert world.phase == "RolledBack" and world.status.get("candidateVersion") is None
    assert world.routes == Routes("v1")


def test_given_a_window_when_the_promoted_version_loses_every_pod_then_it_is_rolled_back_without_waiting():
    world, md = promoted("Canary")
    world.broken.add("v2")
    world.workloads["v2"] = replace(world.workloads["v2"], ready_replicas=0)
    world.tick(md)
    assert world.phase == "RolledBack" and world.routes == Routes("v1")
    assert "no Ready pod" in world.status["history"][-1]["reason"]


def test_given_a_window_when_failures_stay_within_the_failure_limit_then_it_still_passes():
    world, md = promoted("Canary")
    failures = iter([0.5])
    world.metrics = lambda req, at: passing(value=next(failures, 0.0))(req, at)
    world.until(md, lambda w: w.phase == "Succeeded")
    assert world.status["stableVersion"] == "v2" and world.status["failedChecks"] == 1


# ------------------------------------------------------------------------------------------ restarts


@pytest.mark.parametrize("down_for, over", [(timedelta(minutes=1), False), (timedelta(minutes=20), True)])
def test_given_an_operator_restart_mid_window_when_resuming_then_it_measures_before_deciding_from_status(
        down_for, over):
    world, md = promoted("Canary")
    world.run(md, 5)
    world.status = json.loads(json.dumps(world.status))  # only what the apiserver kept survives
    world.now += down_for
    obs = world.observe(md)
    request = analysis_request(md, world.status, obs, world.now)
    assert request is not None and request.version == "v2" and request.role == Role.STABLE
    plan = decide(md, world.status, obs, world.now)  # no measurement this pass
    assert plan.status["postPromotion"] == world.status["postPromotion"], "never ends unmeasured"
    assert {w.version for w in plan.workloads} == {"v1", "v2"} and "v1" not in plan.delete
    results = (MetricResult("error-rate", 0.0, 400), MetricResult("latency-p99", 0.01, 400))
    plan = decide(md, world.status, replace(obs, analysis=AnalysisResults("v2", world.now, request.window, results)),
                  world.now)
    assert (world.now >= parse_time(world.status["postPromotion"]["until"])) is over
    assert ("postPromotion" in plan.status) is not over, "a passing run inside ends it only when the window is over"
    assert plan.status["stableVersion"] == "v2" and plan.status["phase"] == ("Succeeded" if over else "Progressing")


def test_given_a_restart_mid_window_when_a_failing_run_is_measured_then_it_counts_towards_the_same_limit():
    world, md = promoted("Canary")
    world.metrics = passing(value=0.5)
    world.until(md, lambda w: w.status.get("failedChecks") == 1, limit=10)
    world.status = json.loads(json.dumps(world.status))
    world.until(md, lambda w: w.phase == "RolledBack", limit=10)
    assert world.routes == Routes("v1") and world.status["failedChecks"] == 2


# ------------------------------------------------------------------------------------------ requests and changes


@pytest.mark.parametrize("action, phase, stable, event", [
    ("abort", "RolledBack", "v1", "aborted"),
    ("promote", "Succeeded", "v2", "promoted"),
])
def test_given_a_window_when_the_user_aborts_or_promotes_then_it_ends_at_once(action, phase, stable, event):
    world, md = promoted("Canary")
    world.annotations[f"mlops.dev/{action}"] = "1"
    world.tick(md)
    assert world.phase == phase and world.status["stableVersion"] == stable and "postPromotion" not in world.status
    assert world.routes == Routes(stable)
    assert history_events(world.status)[-1] == ("v2", event)
    assert (world.status.get("blockedVersions") == ["v2"]) is (action == "abort")
    world.tick(md)
    assert set(world.workloads) == {stable}
    assert world.status["handledRequests"][action] == "1"


def test_given_a_window_when_a_newer_version_becomes_desired_then_it_waits_for_the_window_to_end():
    world, md = promoted("Canary")
    world.versions["v3"] = version("v3", created=5)
    md3 = md_for("Canary", target="v3")
    world.run(md3, 5)
    assert world.status.get("candidateVersion") is None and "postPromotion" in world.status
    assert "v3 waits for the window to end" in condition(world.status, "Progressing")["message"]
    world.until(md3, lambda w: w.status.get("candidateVersion") == "v3")
    assert history_events(world.status)[-1] == ("v2", "promoted") and "postPromotion" not in world.status


def test_given_a_window_when_the_spec_pins_the_previous_version_again_then_traffic_switches_back_at_once():
    world, md = promoted("Canary")
    world.tick(md_for("Canary", target="v1"))
    assert world.routes == Routes("v1") and world.status["stableVersion"] == "v1"
    assert world.phase == "Succeeded" and not world.status.get("blockedVersions")
    assert history_events(world.status)[-1] == ("v2", "aborted")


def test_given_a_paused_window_when_time_passes_then_nothing_is_measured_or_decided_until_resumed():
    world, md = promoted("Canary")
    paused = md_for("Canary", paused=True)
    measured = len(world.measured)
    world.run(paused, 40)  # well past the window's end
    assert len(world.measured) == measured and world.phase == "Paused" and "postPromotion" in world.status
    assert {w.version for w in world.plans[-1].workloads} == {"v1", "v2"}
    world.until(md, lambda w: w.phase == "Succeeded", limit=10)


def test_given_a_window_when_planning_then_it_wakes_for_the_next_run_and_the_end():
    world, md = promoted("Recreate")
    plan = world.tick(md)
    assert plan.requeue_after is not None and plan.requeue_after <= 30
