"""`track` never follows HyperparameterSearch trials unless its selector asks for search output (pure)."""

from __future__ import annotations

import pytest
from rollout_world import NAME, NS, World, spec, version

from mlops_operator.logic.rollout.state import Observations
from mlops_operator.logic.rollout.versions import resolve

pytestmark = pytest.mark.unit

SEARCH = {"mlops.dev/hyperparametersearch": "bc-search", "mlops.dev/trial": "3"}
BEST = {**SEARCH, "mlops.dev/best-of": "bc-search"}


def observe(versions: dict) -> Observations:
    return Observations(namespace=NS, name=NAME, versions=versions, workloads={})


def resolved(versions: dict, **track) -> str | None:
    md = spec(track={"policy": "latestReady", **track})
    return resolve(md, observe(versions)).version


def test_given_a_newer_ready_trial_when_tracking_the_model_then_the_older_regular_version_is_followed():
    versions = {"v1": version("v1", created=0), "bc-search-t3": version("bc-search-t3", created=9, labels=SEARCH)}
    assert resolved(versions) == "v1"


def test_given_a_newer_best_trial_when_the_selector_names_no_search_label_then_it_is_not_followed():
    versions = {"v1": version("v1", created=0, labels={"tier": "gold"}),
                "bc-search-t3": version("bc-search-t3", created=9, labels={**BEST, "tier": "gold"})}
    assert resolved(versions, matchLabels={"tier": "gold"}) == "v1"


@pytest.mark.parametrize("selector", [{"mlops.dev/best-of": "bc-search"},
                                      {"mlops.dev/hyperparametersearch": "bc-search"}])
def test_given_a_selector_naming_a_search_label_when_resolving_then_the_searchs_output_is_followed(selector):
    versions = {"v1": version("v1", created=20), "bc-search-t3": version("bc-search-t3", created=9, labels=BEST)}
    assert resolved(versions, matchLabels=selector) == "bc-search-t3"


def test_given_only_trials_ready_when_tracking_then_nothing_is_served_and_the_wait_says_why():
    versions = {"bc-search-t3": version("bc-search-t3", created=9, labels=SEARCH)}
    md = spec(track={"policy": "latestReady"})
    desired = resolve(md, observe(versions))
    assert desired.version is None and not desired.problems
    assert "1 Ready search trials are not followed" in desired.waiting
    assert "mlops.dev/best-of" in desired.waiting


def test_given_a_pinned_trial_when_resolving_then_pinning_is_an_explicit_choice_and_serves_it():
    versions = {"bc-search-t3": version("bc-search-t3", created=9, labels=SEARCH)}
    md = spec(version="bc-search-t3")
    assert resolve(md, observe(versions)).version == "bc-search-t3"


def test_given_a_canary_tracking_the_model_when_trials_finish_then_no_trial_is_ever_a_candidate():
    md = spec(track={"policy": "latestReady"}, strategy={"type": "Canary", "canary": {"steps": [{"weight": 50}]}})
    world = World(versions={"v1": version("v1", created=0)})
    world.until(md, lambda w: w.phase == "Succeeded")
    for n in range(1, 4):
        name = f"bc-search-t{n}"
        world.versions[name] = version(name, created=10 + n, labels={**SEARCH, "mlops.dev/trial": str(n)})
        for _ in range(5):
            plan = world.tick(md)
            assert plan.status.get("candidateVersion") is None
            assert {w.version for w in plan.workloads} == {"v1"}
    assert world.status["stableVersion"] == "v1"
