"""``Succeeded`` / ``Ready=True`` mean the entry point answers: the builtin router's pods are part of it.

The world applies the router Deployment with the first routes (as the handler does) and its pod turns
Ready ``router_delay`` later; routers whose entry Service selects version pods have no such pods.
"""

from __future__ import annotations

import pytest

from tests.unit.rollout_world import ROUTER, World, condition, history_events, serving, spec, version

pytestmark = pytest.mark.unit

CANARY = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "30s"}]}}
BLUEGREEN = {"type": "BlueGreen", "blueGreen": {"autoPromote": True, "previewReplicas": 1, "scaleDownDelay": "0s"}}
SHADOW = {"type": "Shadow", "shadow": {"mirrorPercent": 50, "duration": "1m", "autoPromote": True}}


def first_version(router_down: bool = False, **fields) -> tuple[World, object]:
    """A new ModelDeployment of v1, ticked until v1 has been promoted (stable)."""
    md = spec(version="v1", **fields)
    world = World(versions={"v1": version("v1")}, router_down=router_down)
    world.until(md, lambda w: w.status.get("stableVersion") == "v1")
    return world, md


def test_given_first_version_promoted_when_router_has_no_ready_pod_then_progressing_waiting_for_router():
    world, _ = first_version()
    plan = world.plans[-1]
    assert plan.status["phase"] == "Progressing" and history_events(plan.status) == [("v1", "promoted")]
    progressing, ready = condition(plan.status, "Progressing"), condition(plan.status, "Ready")
    assert progressing["status"] == "True" and progressing["reason"] == "WaitingForRouter"
    assert ROUTER in progressing["message"] and ROUTER in ready["message"]
    assert ready["status"] == "False" and ready["reason"] == "RouterNotReady"
    assert "endpoint" not in plan.status
    assert plan.requeue_after is not None and plan.requeue_after <= 3


def test_given_waiting_for_router_when_its_pod_turns_ready_then_succeeded_with_ready_and_endpoint():
    world, md = first_version()
    world.until(md, lambda w: w.phase == "Succeeded", limit=5)
    phases = [p.status.get("phase") for p in world.plans]
    routed_at = next(i for i, p in enumerate(world.plans) if p.routes is not None)
    assert "Succeeded" not in phases[:routed_at + 1]  # never in the pass that first applies the router
    assert condition(world.status, "Ready")["status"] == "True"
    assert condition(world.status, "Progressing")["reason"] == "Succeeded"
    assert world.status["endpoint"]["url"] == "http://bc.team-a.svc:8080"
    assert world.plans[-1].requeue_after is None


def test_given_router_never_ready_when_ticking_long_then_never_succeeded_and_version_not_rolled_back():
    world, md = first_version(router_down=True, progressDeadline="1m")
    world.run(md, 60)
    assert {p.status.get("phase") for p in world.plans} == {"Progressing"}
    assert world.status["stableVersion"] == "v1" and "abortedVersion" not in world.status
    assert condition(world.status, "Ready")["reason"] == "RouterNotReady"


def test_given_succeeded_when_router_loses_every_ready_pod_then_degraded_and_back_when_it_returns():
    md = spec(version="v1")
    world = serving(md)
    world.router_down = True
    plan = world.tick(md)
    ready = condition(plan.status, "Ready")
    assert plan.status["phase"] == "Degraded" and ready["status"] == "False" and ready["reason"] == "RouterNotReady"
    assert "no Ready pod" in ready["message"] and ROUTER in ready["message"]
    assert plan.status["endpoint"]["service"] == "bc"  # the address stays; phase and Ready say it is down
    world.run(md, 3)
    assert world.phase == "Degraded"  # not "Progressing": it answered before
    world.router_down = False
    world.tick(md)
    assert world.phase == "Succeeded" and condition(world.status, "Ready")["status"] == "True"


@pytest.mark.parametrize("strategy", [CANARY, BLUEGREEN, SHADOW, {"type": "Recreate"}],
                         ids=lambda s: s["type"])
def test_given_router_down_during_a_rollout_when_candidate_is_promoted_then_it_waits_for_the_router(strategy):
    md = spec(version="v2", strategy=strategy)
    world = serving(md, "v2")
    world.router_down = True
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=60)
    assert history_events(world.status)[-1] == ("v2", "promoted")  # the steps did not wait for the router
    assert world.phase == "Progressing" and condition(world.status, "Progressing")["reason"] == "WaitingForRouter"
    world.router_down = False
    world.tick(md)
    assert world.phase == "Succeeded" and condition(world.status, "Ready")["status"] == "True"


def test_given_router_down_during_a_canary_when_ticking_then_steps_and_analysis_are_unchanged():
    md = spec(version="v2", strategy=CANARY, analysis={"interval": "30s", "minSamples": 50})

    def rollout(router_down: bool) -> list[tuple]:
        world = serving(md, "v2")
        world.router_down = router_down
        world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=60)
        return [(p.status.get("canaryWeight"), p.status.get("currentStep"), len(p.status.get("analysis", [])))
                for p in world.plans]

    assert rollout(router_down=True) == rollout(router_down=False)


@pytest.mark.parametrize("fields", [
    {"traffic": {"router": "service"}},
    {"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "gw"}]}},
    {"traffic": {"router": "kserve"}, "serving": {"runtime": "kserve"}},
], ids=["service", "gatewayAPI", "kserve"])
def test_given_a_router_without_pods_of_ours_when_first_version_is_promoted_then_succeeded_at_once(fields):
    world, _ = first_version(router_down=True, **fields)  # no router pods of ours: nothing to wait for
    assert world.plans[-1].status["phase"] == "Succeeded"
    assert condition(world.status, "Ready")["status"] == "True" and "endpoint" in world.status
