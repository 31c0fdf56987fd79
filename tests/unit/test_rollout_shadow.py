"""Shadow state machine: mirroring for a duration, agreement + analysis, then promote, wait or abort."""

from __future__ import annotations

from datetime import datetime

import pytest

from mlops_operator.logic.rollout.state import AnalysisRequest, MetricResult, Role, Routes
from tests.unit.rollout_world import history_events, serving, spec

pytestmark = pytest.mark.unit


def shadow(target: str = "v2", analysis: dict | None = None, **sh) -> object:
    settings = {"mirrorPercent": 50, "duration": "2m", "minAgreement": 0.9, "autoPromote": True, **sh}
    fields = {"version": target, "strategy": {"type": "Shadow", "shadow": settings},
              "analysis": analysis or {"interval": "30s", "failureLimit": 1, "minSamples": 50}}
    return spec(**fields)


def agreement(value: float | None, samples: int = 500, error_rate: float = 0.0):
    def measure(req: AnalysisRequest, at: datetime) -> list[MetricResult]:
        return [MetricResult("shadow-agreement", value, samples), MetricResult("error-rate", error_rate, samples),
                MetricResult("latency-p99", 0.01, samples)]
    return measure


def test_given_agreeing_shadow_when_duration_passes_then_it_is_promoted():
    md = shadow()
    world = serving(md, "v2")
    world.metrics = agreement(0.97)
    world.until(md, lambda w: w.status.get("currentStep") == 1)
    mirroring_since = world.now
    assert world.plans[-1].routes == Routes("v1", shadow="v2", mirror_percent=50)
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    assert (world.now - mirroring_since).total_seconds() >= 120
    assert all(r.role == Role.SHADOW and not r.carries_traffic for r in world.measured)
    assert world.routes == Routes("v2") and world.status.get("canaryWeight") == 0


def test_given_shadow_before_ready_when_ticking_then_nothing_is_mirrored():
    md = shadow()
    world = serving(md, "v2")
    world.broken.add("v2")
    world.run(md, 5)
    assert all(p.routes == Routes("v1") for p in world.plans[-5:])


def test_given_low_agreement_when_duration_passes_then_it_is_aborted():
    md = shadow(analysis={"interval": "30s", "failureLimit": 100, "minSamples": 50})
    world = serving(md, "v2")
    world.metrics = agreement(0.5)
    world.until(md, lambda w: w.phase == "RolledBack")
    assert history_events(world.status)[-1] == ("v2", "rolledBack")
    assert "shadow-agreement" in world.status["history"][-1]["reason"]
    assert world.routes == Routes("v1")


def test_given_agreement_failing_beyond_failure_limit_when_mirroring_then_it_aborts_early():
    md = shadow(duration="1h")
    world = serving(md, "v2")
    world.metrics = agreement(0.1)
    world.until(md, lambda w: w.phase == "RolledBack", limit=30)


def test_given_auto_promote_off_when_shadow_passed_then_paused_until_promoted():
    md = shadow(autoPromote=False)
    world = serving(md, "v2")
    world.metrics = agreement(0.99)
    world.until(md, lambda w: w.phase == "Paused")
    world.run(md, 10)
    assert world.status["stableVersion"] == "v1"
    world.annotations["mlops.dev/promote"] = "1"
    world.tick(md)
    assert world.status["stableVersion"] == "v2"


@pytest.mark.parametrize("value, samples", [(None, 500), (0.99, 3), (float("nan"), 500)])
def test_given_no_agreement_data_when_duration_passes_then_it_holds(value, samples):
    md = shadow()
    world = serving(md, "v2")
    world.metrics = agreement(value, samples)
    world.run(md, 40)
    assert world.status["candidateVersion"] == "v2" and world.status["stableVersion"] == "v1"
    assert world.status["failedChecks"] == 0


def test_given_metrics_unreachable_while_shadowing_then_it_holds_and_never_promotes():
    md = shadow()
    world = serving(md, "v2")
    world.online = False
    world.run(md, 40)
    assert world.status["stableVersion"] == "v1" and world.status["failedChecks"] == 0


def test_given_shadow_without_analysis_block_then_agreement_alone_is_checked():
    md = spec(version="v2", strategy={"type": "Shadow", "shadow": {"duration": "1m", "minAgreement": 0.9,
                                                                   "autoPromote": True}})
    world = serving(md, "v2")
    world.metrics = lambda req, at: [MetricResult("shadow-agreement", 0.95, 100)]
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
