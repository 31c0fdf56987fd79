"""Canary state machine: steps, pauses, analysis gating, failure limit, restarts and superseding versions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from mlops_operator.logic.rollout import analysis_request, decide
from mlops_operator.logic.rollout.state import AnalysisResults, MetricResult, RouteObservation, Routes
from tests.unit.rollout_world import (
    World,
    condition,
    constant,
    history_events,
    passing,
    serving,
    spec,
    version,
)

pytestmark = pytest.mark.unit

STEPS = {"type": "Canary", "canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 30, "pause": "1m"},
                                                 {"weight": 60, "pause": "1m"}]}}
ANALYSIS = {"interval": "30s", "failureLimit": 1, "minSamples": 50}


def canary(target: str = "v2", **overrides) -> object:
    fields = {"version": target, "strategy": STEPS, "analysis": ANALYSIS}
    fields.update(overrides)
    return spec(**fields)


def weights_seen(world: World) -> list[int]:
    seen: list[int] = []
    for plan in world.plans:
        w = plan.status.get("canaryWeight", 0)
        if plan.status.get("candidateVersion") and (not seen or seen[-1] != w):
            seen.append(w)
    return seen


def test_given_healthy_candidate_when_ticking_then_weights_follow_the_steps_and_it_is_promoted():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    assert weights_seen(world)[-3:] == [10, 30, 60]
    assert world.phase == "Succeeded"
    assert history_events(world.status)[-1] == ("v2", "promoted")
    assert world.routes == Routes("v2")
    assert world.versions["v2"].stage == "Production" and world.versions["v1"].stage == "Archived"
    world.tick(md)
    assert "v1" not in world.workloads  # removed once no route referenced it


def test_given_step_pause_when_analysis_passes_early_then_the_step_still_holds_its_pause():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    started = world.now - timedelta(seconds=10)
    world.until(md, lambda w: w.status.get("canaryWeight") == 30)
    held = world.now - timedelta(seconds=10) - started
    assert held >= timedelta(minutes=1)


def test_given_failing_checks_beyond_failure_limit_when_ticking_then_traffic_returns_to_stable_before_scale_down():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.metrics = passing(value=0.5)  # 50 % errors
    world.until(md, lambda w: w.phase == "RolledBack")
    rollback_plan = world.plans[-1]
    assert rollback_plan.routes == Routes("v1")
    assert rollback_plan.delete == ()  # the router still sent 10 % to v2 when this pass observed it
    assert world.status["failedChecks"] == 2 and world.status["abortedVersion"] == "v2"
    assert [e.reason for e in rollback_plan.events] == ["AnalysisFailed", "RolledBack"]
    world.tick(md)
    assert world.plans[-1].delete == ("v2",)
    assert world.versions["v2"].stage == "Archived" and world.versions["v1"].stage == "Production"


def test_given_routes_cannot_be_read_when_rolled_back_then_the_candidate_is_never_deleted():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.metrics = passing(value=0.5)
    world.routes_readable = False
    world.until(md, lambda w: w.phase == "RolledBack")
    world.run(md, 5)
    assert "v2" in world.workloads and all(p.delete == () for p in world.plans[-5:])


def test_given_a_rolled_back_version_when_ticking_on_then_it_is_never_retried():
    md = canary()
    world = serving(md, "v2")
    world.broken.add("v2")
    world.until(md, lambda w: w.phase == "RolledBack", limit=100)
    world.broken.clear()
    world.run(md, 30)
    assert world.phase == "RolledBack" and world.status.get("candidateVersion") is None
    assert [h for h in history_events(world.status) if h[0] == "v2"] == [("v2", "rolledBack")]


@pytest.mark.parametrize("how", ["retry-annotation", "new-desired-version"])
def test_given_a_rolled_back_version_when_user_retries_or_desired_changes_then_a_rollout_starts(how):
    md = canary()
    world = serving(md, "v2", "v3")
    world.broken.add("v2")
    world.until(md, lambda w: w.phase == "RolledBack", limit=100)
    world.broken.clear()
    if how == "retry-annotation":
        world.annotations["mlops.dev/retry"] = "2025-01-01T13:00:00Z"
        expected = "v2"
    else:
        md = canary("v3")
        expected = "v3"
    world.until(md, lambda w: w.status.get("candidateVersion") == expected, limit=5)
    assert world.status.get("abortedVersion") is None and world.status["failedChecks"] == 0
    world.until(md, lambda w: w.status.get("stableVersion") == expected)


def test_given_operator_restart_at_30_percent_when_last_run_is_stale_then_it_measures_again_before_advancing():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 30)
    world.until(md, lambda w: any(a["at"] > w.status["stepStartedAt"] for a in w.status.get("analysis", [])))
    # the operator is down for ten minutes: the pause is long over, but the last run is stale
    world.now += timedelta(minutes=10)
    obs = world.observe()
    request = analysis_request(md, world.status, obs, world.now)
    assert request is not None and request.version == "v2" and request.carries_traffic
    plan = decide(md, world.status, obs, world.now)  # no fresh measurement in this pass
    assert plan.status["canaryWeight"] == 30 and plan.status["currentStep"] == 1
    fresh = replace(obs, analysis=AnalysisResults("v2", world.now, timedelta(seconds=30),
                                                  (MetricResult("error-rate", 0.0, 400), MetricResult("latency-p99", 0.05, 400))))
    plan = decide(md, world.status, fresh, world.now)
    assert plan.status["canaryWeight"] == 60 and plan.status["currentStep"] == 2


def test_given_results_measured_for_another_version_when_deciding_then_they_are_ignored():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.now += timedelta(minutes=2)
    obs = replace(world.observe(), analysis=AnalysisResults("v9", world.now, timedelta(seconds=30),
                                                            (MetricResult("error-rate", 0.0, 400),)))
    plan = decide(md, world.status, obs, world.now)
    assert plan.status["canaryWeight"] == 10 and plan.status.get("analysis", []) == world.status.get("analysis", [])


def test_given_new_desired_version_mid_canary_when_ticking_then_rollout_restarts_from_zero():
    md = canary()
    world = serving(md, "v2", "v3")
    world.until(md, lambda w: w.status.get("canaryWeight") == 30)
    world.metrics = passing(value=0.02)
    world.tick(md, seconds=30)
    world.metrics = passing()
    md3 = canary("v3")
    plan = world.tick(md3)
    assert plan.status.get("candidateVersion") is None and plan.routes == Routes("v1")
    assert history_events(plan.status)[-1] == ("v2", "aborted") and plan.status.get("abortedVersion") is None
    plan = world.tick(md3)
    assert plan.status["candidateVersion"] == "v3" and plan.status["canaryWeight"] == 0
    assert plan.status["failedChecks"] == 0 and plan.status.get("analysis") is None
    world.until(md3, lambda w: w.status.get("stableVersion") == "v3")
    assert "v2" not in world.workloads


def test_given_rapid_v1_v2_v1_flips_when_ticking_then_stable_keeps_serving_and_nothing_flaps():
    md1, md2 = canary("v1"), canary("v2")
    world = serving(md1, "v2")
    for md in (md2, md1, md2, md1, md2, md1):
        world.tick(md)
    world.run(md1, 5)
    assert all((p.routes or Routes("v1")).stable == "v1" for p in world.plans[-11:])
    assert all(p.status.get("canaryWeight", 0) == 0 for p in world.plans[-11:])
    assert world.phase == "Succeeded" and world.status.get("abortedVersion") is None
    assert "v2" not in world.workloads


def test_given_metrics_provider_down_before_the_rollout_when_candidate_is_ready_then_it_holds_at_zero():
    md = canary()
    world = serving(md, "v2")
    world.online = False
    world.run(md, 20)
    assert world.status["candidateVersion"] == "v2" and world.status["canaryWeight"] == 0
    assert world.status["failedChecks"] == 0
    assert condition(world.status, "AnalysisAvailable")["status"] == "False"
    world.online = True
    world.until(md, lambda w: w.status.get("canaryWeight") == 10, limit=3)


def test_given_metrics_provider_down_mid_analysis_when_errors_exceed_the_limit_then_it_rolls_back():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.online = False
    world.until(md, lambda w: w.phase == "RolledBack", limit=20)
    assert any("prometheus unreachable" in a["message"] for a in world.status["analysis"])
    assert world.routes == Routes("v1")
    assert history_events(world.status)[-1] == ("v2", "rolledBack")


@pytest.mark.parametrize("on_no_data, expect_failures", [("hold", 0), ("fail", 2)])
def test_given_too_few_samples_when_ticking_then_it_never_advances_and_counts_per_on_no_data(on_no_data, expect_failures):
    md = canary(analysis={**ANALYSIS, "onNoData": on_no_data})
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.metrics = passing(samples=10)
    world.run(md, 30)
    assert world.status["failedChecks"] == expect_failures
    assert world.status.get("stableVersion") == "v1"
    if on_no_data == "hold":
        assert world.phase == "Progressing" and world.status["canaryWeight"] == 10
    else:
        assert world.phase == "RolledBack" and world.status["canaryWeight"] == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_given_nan_inf_or_empty_results_when_ticking_then_the_step_never_advances(bad):
    md = canary(analysis={**ANALYSIS, "failureLimit": 100})
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.metrics = constant(e=MetricResult("error-rate", bad, 500), l=MetricResult("latency-p99", 0.01, 500))
    world.run(md, 30)
    assert world.status["canaryWeight"] == 10 and world.status["currentStep"] == 0


def test_given_crash_looping_candidate_when_progress_deadline_passes_then_it_rolls_back():
    md = canary(progressDeadline="2m")
    world = serving(md, "v2")
    world.broken.add("v2")
    world.until(md, lambda w: w.phase == "RolledBack", limit=30)
    assert "progressDeadline" in world.status["history"][-1]["reason"]
    assert world.status.get("canaryWeight") == 0 and world.routes == Routes("v1")
    world.tick(md)
    assert "v2" not in world.workloads


def test_given_spec_paused_when_ticking_then_nothing_moves_and_resume_needs_a_fresh_run():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    paused, measured_before = canary(paused=True), len(world.measured)
    world.run(paused, 30)
    assert world.phase == "Paused" and world.status["canaryWeight"] == 10
    assert len(world.measured) == measured_before  # no analysis while paused
    resumed_at = world.now
    world.tick(md)
    # the runs before the pause are stale: the resuming pass measured anew, and only then advanced
    assert len(world.measured) == measured_before + 1
    assert world.status["canaryWeight"] == 30
    assert world.status["analysis"][-1]["at"] == resumed_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_given_spec_paused_with_nothing_in_progress_when_a_new_version_is_desired_then_it_is_not_started():
    world = serving(canary(), "v2")
    world.run(canary(paused=True), 5)
    assert world.phase == "Paused" and world.status.get("candidateVersion") is None


def test_given_promote_annotation_mid_canary_when_ticking_then_promoted_once_and_never_reapplied():
    md = canary()
    world = serving(md, "v2", "v3")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    world.annotations["mlops.dev/promote"] = "n-1"
    world.tick(md)
    assert world.status["stableVersion"] == "v2" and world.status["handledRequests"] == {"promote": "n-1"}
    md3 = canary("v3")
    world.until(md3, lambda w: w.status.get("canaryWeight") == 10)
    assert world.status["stableVersion"] == "v2"  # the old request did not promote v3


def test_given_promote_annotation_when_candidate_is_not_ready_then_it_is_refused_and_recorded():
    md = canary()
    world = serving(md, "v2")
    world.broken.add("v2")
    world.tick(md)
    world.annotations["mlops.dev/promote"] = "n-1"
    plan = world.tick(md)
    assert [e.reason for e in plan.events if e.reason.startswith("Promote")] == ["PromoteRefused"]
    assert plan.status["stableVersion"] == "v1" and plan.status["handledRequests"]["promote"] == "n-1"


def test_given_abort_annotation_when_ticking_then_candidate_is_aborted_and_not_retried():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 30)
    world.annotations.update({"mlops.dev/abort": "a-1", "mlops.dev/promote": "p-1"})
    plan = world.tick(md)
    assert plan.routes == Routes("v1") and plan.status["phase"] == "RolledBack"
    assert history_events(plan.status)[-1] == ("v2", "aborted")
    world.run(md, 10)
    assert world.status["stableVersion"] == "v1" and world.status.get("candidateVersion") is None


def test_given_abort_with_no_rollout_when_ticking_then_it_is_recorded_as_ignored():
    world = serving(canary("v1"))
    world.annotations["mlops.dev/abort"] = "a-1"
    plan = world.tick(canary("v1"))
    assert [e.reason for e in plan.events] == ["AbortIgnored"]
    assert plan.status["handledRequests"] == {"abort": "a-1"}
    assert world.tick(canary("v1")).events == []


def test_given_no_analysis_block_when_ticking_then_steps_advance_on_pause_alone():
    md = spec(version="v2", strategy=STEPS)
    world = serving(md, "v2")
    world.online = False  # irrelevant without checks
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=40)
    assert world.measured == []


def test_given_kill_between_rollback_and_scale_down_when_restarted_then_traffic_is_on_stable_then_candidate_goes():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 30)
    world.annotations["mlops.dev/abort"] = "a-1"
    plan = world.tick(md)  # the status write happened; the router applied it; then the operator died
    assert plan.delete == () and "v2" in world.workloads
    fresh_start = World(versions=world.versions, now=world.now + timedelta(minutes=5), status=world.status,
                        workloads=world.workloads, routes=world.routes, born=world.born,
                        annotations=world.annotations)
    plan = fresh_start.tick(md)
    assert plan.routes == Routes("v1") and plan.delete == ("v2",)


def test_given_observed_routes_still_reference_a_leftover_when_deciding_then_it_is_kept():
    md = canary("v1")
    world = serving(md, "v2")
    world.workloads["v2"] = replace(world.workloads["v1"], version="v2")
    world.born["v2"] = world.now
    obs = replace(world.observe(), routes=RouteObservation(frozenset({"v1", "v2"})))
    assert decide(md, world.status, obs, world.now).delete == ()
    obs = replace(obs, routes=RouteObservation(frozenset({"v1"})))
    assert decide(md, world.status, obs, world.now).delete == ("v2",)


def test_given_requeue_hint_when_in_a_step_then_it_points_at_the_next_due_moment():
    md = canary()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    plan = world.plans[-1]
    assert plan.requeue_after == 30.0  # first run one interval after the step started


def test_given_version_info_for_new_world_when_first_deployed_then_endpoint_and_stage_are_set():
    world = World(versions={"v1": version("v1")})
    md = spec(version="v1")
    world.until(md, lambda w: w.phase == "Succeeded")
    assert world.status["endpoint"] == {"url": "http://bc.team-a.svc:8080", "service": "bc", "port": 8080,
                                        "modelName": "breast-cancer"}
    assert world.versions["v1"].stage == "Production"
    assert condition(world.status, "Ready")["status"] == "True"


def test_given_candidate_pods_that_cannot_start_when_ticking_then_candidate_ready_says_why_until_they_do():
    md = canary()
    world = serving(md, "v2")
    world.broken.add("v2")
    world.problems["v2"] = 'CreateContainerConfigError: secret "mlops-s3-readonly" not found'
    world.run(md, 3)
    cond = condition(world.status, "CandidateReady")
    assert (cond["status"], cond["reason"]) == ("False", "PodsNotReady")
    assert cond["message"] == 'v2: 0/1 Ready (CreateContainerConfigError: secret "mlops-s3-readonly" not found)'
    world.broken.clear()
    world.run(md, 2)
    cond = condition(world.status, "CandidateReady")
    assert (cond["status"], cond["message"]) == ("True", "v2: 1/1 Ready")
