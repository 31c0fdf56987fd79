"""Blue/green state machine: preview, pre-promotion analysis, autoPromote, manual promotion, scaleDownDelay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mlops_operator.logic.rollout.state import Role, Routes, WorkloadPlan
from tests.unit.rollout_world import history_events, passing, serving, spec

pytestmark = pytest.mark.unit

ANALYSIS = {"interval": "30s", "failureLimit": 1, "minSamples": 50}


def bluegreen(target: str = "v2", analysis: dict | None = ANALYSIS, **bg) -> object:
    settings = {"autoPromote": True, "previewReplicas": 1, "scaleDownDelay": "2m", **bg}
    fields = {"version": target, "strategy": {"type": "BlueGreen", "blueGreen": settings},
              "serving": {"replicas": 3}}
    if analysis is not None:
        fields["analysis"] = analysis
    return spec(**fields)


def test_given_preview_when_analysis_passes_then_candidate_scales_up_and_traffic_switches_at_once():
    md = bluegreen()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("candidateVersion") == "v2")
    plan = world.tick(md)
    assert plan.preview == "v2" and plan.routes == Routes("v1")
    assert WorkloadPlan("v2", Role.PREVIEW, 1) in plan.workloads
    assert WorkloadPlan("v1", Role.STABLE, 3) in plan.workloads
    world.until(md, lambda w: w.status.get("currentStep") == 1)
    assert all(r.role == Role.PREVIEW and not r.carries_traffic for r in world.measured)
    assert WorkloadPlan("v2", Role.PREVIEW, 3) in world.plans[-1].workloads
    assert all(p.routes == Routes("v1") for p in world.plans if p.status.get("candidateVersion") == "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    assert world.plans[-1].routes == Routes("v2") and world.plans[-1].preview is None
    assert world.phase == "Succeeded"


def test_given_switch_when_scale_down_delay_runs_then_old_version_stays_until_it_passes():
    md = bluegreen()
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    switched = world.now - timedelta(seconds=10)
    world.until(md, lambda w: "v1" not in w.workloads, limit=30)
    gone = world.now - timedelta(seconds=10)
    assert timedelta(minutes=2) <= gone - switched < timedelta(minutes=2, seconds=20)
    assert world.plans[-2].requeue_after is not None


def test_given_auto_promote_off_when_analysis_passed_then_paused_until_promote_annotation():
    md = bluegreen(autoPromote=False)
    world = serving(md, "v2")
    world.until(md, lambda w: w.phase == "Paused")
    world.run(md, 20)
    assert world.phase == "Paused" and world.status["stableVersion"] == "v1"
    world.annotations["mlops.dev/promote"] = "go"
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=10)
    assert history_events(world.status)[-1] == ("v2", "promoted")


def test_given_preview_without_traffic_when_analysis_has_no_data_then_it_never_switches():
    md = bluegreen()
    world = serving(md, "v2")
    world.metrics = passing(samples=0)
    world.run(md, 40)
    assert world.status["stableVersion"] == "v1" and world.status["currentStep"] == 0
    assert world.status["failedChecks"] == 0


def test_given_preview_failing_analysis_when_beyond_limit_then_rolled_back_and_preview_removed():
    md = bluegreen()
    world = serving(md, "v2")
    world.metrics = passing(value=0.9)
    world.until(md, lambda w: w.phase == "RolledBack")
    assert world.plans[-1].preview is None and world.routes == Routes("v1")
    world.tick(md)
    assert "v2" not in world.workloads  # a rollback does not wait for scaleDownDelay


def test_given_metrics_down_during_preview_when_ticking_then_it_holds_without_counting_failures():
    md = bluegreen()
    world = serving(md, "v2")
    world.online = False
    world.run(md, 30)
    assert world.status["failedChecks"] == 0 and world.status["candidateVersion"] == "v2"
    assert world.status["stableVersion"] == "v1"


def test_given_no_preview_replicas_when_rolling_out_then_no_analysis_and_switch_after_full_scale_up():
    md = bluegreen(previewReplicas=0)
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=20)
    assert world.measured == []


def test_given_no_analysis_block_when_preview_ready_then_auto_promotion_follows():
    md = bluegreen(analysis=None)
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=20)
    assert world.measured == []
