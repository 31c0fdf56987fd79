"""Recreate and first-version rollouts, desired-version resolution, stages and status bookkeeping."""

from __future__ import annotations

import pytest

from mlops_operator.logic.rollout import decide
from mlops_operator.logic.rollout.state import RolloutStatus, Routes
from tests.unit.rollout_world import T0, World, condition, history_events, serving, spec, version

pytestmark = pytest.mark.unit


def test_given_recreate_when_new_version_is_ready_then_it_replaces_stable_without_analysis():
    md = spec(version="v2", strategy={"type": "Recreate"}, analysis={"interval": "30s"})
    world = serving(md, "v2")
    world.online = False  # Recreate never measures
    world.until(md, lambda w: w.status.get("stableVersion") == "v2", limit=5)
    assert world.measured == [] and world.routes == Routes("v2")
    assert all(p.routes == Routes("v1") for p in world.plans[:-1] if p.status.get("candidateVersion") == "v2")


def test_given_recreate_candidate_never_ready_when_deadline_passes_then_old_version_keeps_serving():
    md = spec(version="v2", progressDeadline="1m")
    world = serving(md, "v2")
    world.broken.add("v2")
    world.until(md, lambda w: w.phase == "RolledBack", limit=20)
    assert world.routes == Routes("v1") and world.status["abortedVersion"] == "v2"


def test_given_no_ready_version_when_first_deployed_then_pending_with_a_reason():
    world = World(versions={"v1": version("v1", phase="Training")})
    plan = world.tick(spec(version="v1"))
    assert plan.status["phase"] == "Pending" and plan.workloads == () and plan.routes is None
    assert "Training" in condition(plan.status, "Progressing")["message"]


def test_given_first_version_never_ready_when_deadline_passes_then_failed_and_nothing_served():
    world = World(versions={"v1": version("v1")}, broken={"v1"})
    md = spec(version="v1", progressDeadline="1m")
    world.until(md, lambda w: w.phase == "Failed", limit=20)
    assert world.status.get("stableVersion") is None and world.status["abortedVersion"] == "v1"
    world.tick(md)
    assert world.workloads == {}


def test_given_missing_pinned_version_when_deciding_then_invalid_spec_and_nothing_rolled_out():
    world = World(versions={})
    plan = world.tick(spec(version="nope"))
    cond = condition(plan.status, "InvalidSpec")
    assert cond["status"] == "True" and cond["reason"] == "ModelVersionNotFound"
    assert plan.workloads == () and [e.reason for e in plan.events] == ["ModelVersionNotFound"]
    world.versions["nope"] = version("nope")
    world.until(spec(version="nope"), lambda w: w.phase == "Succeeded", limit=5)
    assert condition(world.status, "InvalidSpec")["status"] == "False"


def test_given_pinned_version_of_another_model_when_deciding_then_model_mismatch():
    world = World(versions={"x1": version("x1", model="other")})
    plan = world.tick(spec(version="x1"))
    assert condition(plan.status, "InvalidSpec")["reason"] == "ModelMismatch" and plan.workloads == ()


def test_given_track_latest_ready_when_versions_appear_then_the_newest_ready_one_is_served():
    versions = {"v1": version("v1", created=0), "v2": version("v2", created=5, phase="Rejected"),
                "v3": version("v3", created=9, phase="Training"), "o9": version("o9", created=20, model="other")}
    world = World(versions=versions)
    md = spec(track={"policy": "latestReady"})
    world.until(md, lambda w: w.phase == "Succeeded")
    assert world.status["stableVersion"] == "v1"
    world.versions["v3"] = version("v3", created=9)
    world.until(md, lambda w: w.status.get("stableVersion") == "v3", limit=10)


def test_given_track_with_match_labels_when_resolving_then_only_matching_versions_are_followed():
    versions = {"v1": version("v1", created=0, labels={"tier": "gold"}), "v2": version("v2", created=5)}
    world = World(versions=versions)
    world.until(spec(track={"matchLabels": {"tier": "gold"}}), lambda w: w.phase == "Succeeded")
    assert world.status["stableVersion"] == "v1"


def test_given_a_version_deleted_mid_rollout_when_deciding_then_the_candidate_is_dropped():
    md = spec(track={"policy": "latestReady"}, strategy={"type": "Canary", "canary": {"steps": [{"weight": 50}]}})
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("candidateVersion") == "v2")
    del world.versions["v2"]
    plan = world.tick(md)
    assert plan.status.get("candidateVersion") is None and history_events(plan.status)[-1] == ("v2", "aborted")


def test_given_the_same_world_when_deciding_twice_then_the_status_is_identical():
    md = spec(version="v2", strategy={"type": "Canary", "canary": {"steps": [{"weight": 50}]}})
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 50)
    obs = world.observe()
    first = decide(md, world.status, obs, world.now)
    second = decide(md, first.status, obs, world.now)
    assert first.status == second.status and second.events == []


def test_given_unknown_status_fields_when_round_tripped_then_they_survive():
    raw = {"phase": "Succeeded", "stableVersion": "v1", "somethingNewer": {"x": 1}, "stepStartedAt": "2025-01-01T12:00:00Z"}
    st = RolloutStatus.from_dict(raw)
    assert st.step_started_at == T0
    out = st.to_dict()
    assert out["somethingNewer"] == {"x": 1} and out["stepStartedAt"] == "2025-01-01T12:00:00Z"
    st.candidate = None
    st.step_started_at = None
    assert "stepStartedAt" not in st.to_dict()


def test_given_long_history_when_written_then_it_is_bounded():
    md = spec(version="v1")
    world = serving(md)
    world.status["history"] = [{"version": f"x{i}", "event": "promoted", "at": "2025-01-01T00:00:00Z"} for i in range(50)]
    world.status["analysis"] = [{"at": "2025-01-01T00:00:00Z", "metric": "m", "passed": True}] * 150
    plan = world.tick(md)
    assert len(plan.status["history"]) == 20 and len(plan.status["analysis"]) == 60


def test_given_stable_pods_not_ready_when_serving_then_degraded():
    md = spec(version="v1")
    world = serving(md)
    world.broken.add("v1")
    plan = world.tick(md)
    assert plan.status["phase"] == "Degraded" and condition(plan.status, "Ready")["status"] == "False"
