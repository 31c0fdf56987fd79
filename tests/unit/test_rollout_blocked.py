"""A version that failed here (rolled back or aborted, during a rollout or after its promotion) is never
picked again by ``track`` until ``mlops.dev/retry``; a pinned ``spec.version`` is never skipped. Pure."""

from __future__ import annotations

import pytest

from mlops_operator.logic.rollout.state import Observations, Routes
from mlops_operator.logic.rollout.versions import resolve
from tests.unit.rollout_world import NAME, NS, history_events, passing, serving, spec, version

pytestmark = pytest.mark.unit

GOLD = {"tier": "gold"}
ANALYSIS = {"interval": "30s", "failureLimit": 1, "minSamples": 50, "postPromotion": {"duration": "5m"}}
CANARY = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "1m"}]}}


def versions(*specs: tuple) -> dict:
    out = {}
    for name, created, *rest in specs:
        out[name] = version(name, created=created, **(rest[0] if rest else {}))
    return out


@pytest.mark.parametrize("available, blocked, selector, want, skipped", [
    # newest Ready wins when nothing failed
    (versions(("v1", 0), ("v2", 1)), [], None, "v2", set()),
    # the newest failed: the newest that did not is followed, and the skipped one is named
    (versions(("v1", 0), ("v2", 1)), ["v2"], None, "v1", {"v2"}),
    # a newer version that did not fail is followed past an older failed one (nothing skipped)
    (versions(("v1", 0), ("v2", 1), ("v3", 2)), ["v2"], None, "v3", set()),
    # two failed in a row: both skipped
    (versions(("v1", 0), ("v2", 1), ("v3", 2)), ["v2", "v3"], None, "v1", {"v2", "v3"}),
    # an older failed version is not "skipped" (it would not have been picked anyway)
    (versions(("v1", 0), ("v2", 1)), ["v1"], None, "v2", set()),
    # matchLabels: only selected versions count, failed or not
    (versions(("v1", 0, {"labels": GOLD}), ("v2", 1, {"labels": GOLD}), ("v3", 2)), ["v2"], GOLD, "v1", {"v2"}),
    # everything failed: nothing to follow, and the wait says why
    (versions(("v1", 0)), ["v1"], None, None, {"v1"}),
])
def test_given_blocked_versions_when_tracking_then_the_newest_ready_one_that_did_not_fail_is_followed(
        available, blocked, selector, want, skipped):
    md = spec(track={"policy": "latestReady", **({"matchLabels": selector} if selector else {})})
    desired = resolve(md, Observations(namespace=NS, name=NAME, versions=available, workloads={}), blocked)
    assert desired.version == want and desired.skipped == frozenset(skipped)
    if want is None:
        assert "mlops.dev/retry" in desired.waiting


def test_given_a_blocked_version_when_it_is_pinned_then_pinning_is_an_explicit_choice_and_resolves_it():
    md = spec(version="v2")
    obs = Observations(namespace=NS, name=NAME, versions=versions(("v1", 0), ("v2", 1)), workloads={})
    assert resolve(md, obs, ["v2"]).version == "v2"


def tracking(**analysis):
    return spec(track={"policy": "latestReady"}, strategy=CANARY, analysis={**ANALYSIS, **analysis})


def failed_after_promotion(md) -> object:
    """v1 serving, v2 tracked, promoted, failing inside its window: rolled back, metrics healthy again."""
    world = serving(md, "v2")
    world.until(md, lambda w: "postPromotion" in w.status)
    world.metrics = passing(value=0.5)
    world.until(md, lambda w: w.phase == "RolledBack", limit=30)
    world.metrics = passing()
    return world


@pytest.mark.parametrize("when", ["after-promotion", "during-canary"])
def test_given_a_tracked_version_that_failed_when_ticking_on_then_track_never_picks_it_again(when):
    md = tracking()
    world = serving(md, "v2")
    if when == "during-canary":
        world.until(md, lambda w: w.status.get("canaryWeight") == 50)
    else:
        world.until(md, lambda w: "postPromotion" in w.status)
    world.metrics = passing(value=0.5)
    world.until(md, lambda w: w.phase == "RolledBack", limit=30)
    world.metrics = passing()
    world.run(md, 40)
    assert all(p.status.get("candidateVersion") is None for p in world.plans[-40:])
    assert world.phase == "RolledBack" and world.status["desiredVersion"] == "v1"
    assert world.status["blockedVersions"] == ["v2"] and world.routes == Routes("v1")
    assert [e for e in history_events(world.status) if e[0] == "v2"][-1] == ("v2", "rolledBack")


def test_given_a_blocked_version_when_a_newer_one_arrives_and_goes_then_the_blocked_one_is_still_skipped():
    md = tracking()
    world = failed_after_promotion(md)
    world.versions["v3"] = version("v3", created=5)
    world.until(md, lambda w: w.status.get("stableVersion") == "v3" and w.phase == "Succeeded")
    del world.versions["v3"]  # e.g. deleted by retention, or by hand
    world.run(md, 20)
    assert all(p.status.get("candidateVersion") != "v2" for p in world.plans[-20:])
    assert world.status["desiredVersion"] == "v1" and world.status["blockedVersions"] == ["v2"]


def test_given_a_blocked_version_when_the_user_retries_then_track_follows_it_again():
    md = tracking()
    world = failed_after_promotion(md)
    world.run(md, 5)
    world.annotations["mlops.dev/retry"] = "1"
    plan = world.tick(md)
    assert "Retry" in [e.reason for e in plan.events]
    assert not world.status.get("blockedVersions") and world.status.get("abortedVersion") is None
    world.until(md, lambda w: w.status.get("candidateVersion") == "v2", limit=3)
    world.until(md, lambda w: w.status.get("stableVersion") == "v2" and w.phase == "Succeeded")


def test_given_nothing_blocked_when_the_user_retries_then_the_request_is_ignored_and_recorded():
    md = tracking()
    world = serving(md, "v2")
    world.annotations["mlops.dev/retry"] = "1"
    plan = world.tick(md)
    assert "RetryIgnored" in [e.reason for e in plan.events] and world.status["handledRequests"]["retry"] == "1"
