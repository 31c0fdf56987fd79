"""The ModelVersion index a ModelDeployment pass reads instead of listing its namespace: which keys a version
is filed under, which versions a pass sees, and that equal names in two namespaces never meet."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeployment
from mlops_operator.logic.rollout.state import Observations, RolloutStatus
from mlops_operator.logic.rollout.version_index import (
    dict_lookup,
    index_entries,
    model_key,
    name_key,
    named_versions,
    observed_versions,
)
from mlops_operator.logic.rollout.versions import resolve

pytestmark = pytest.mark.unit


def mv(namespace: str, name: str, model: str = "bc", phase: str | None = "Ready", minute: int = 0) -> dict[str, Any]:
    status = {"phase": phase, "artifact": {"uri": f"s3://b/models/{namespace}/{model}/{name}/", "sha256": "a" * 64}}
    return {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": f"2026-01-01T00:{minute:02d}:00Z"},
            "spec": {"model": model}, "status": status if phase else {}}


WORLD = [mv("team-a", "bc-v1", minute=1), mv("team-a", "bc-v2", minute=2), mv("team-a", "iris-v1", model="iris"),
         mv("team-b", "bc-v1", minute=1), mv("team-b", "bc-v9", minute=9)]


def test_given_a_version_when_indexed_then_it_is_filed_by_namespace_and_model_and_by_namespace_and_name():
    entries = index_entries(mv("team-a", "bc-v1"))
    assert set(entries) == {model_key("team-a", "bc"), name_key("team-a", "bc-v1")}
    info = entries[model_key("team-a", "bc")]
    assert (info.name, info.model, info.ready, info.artifact_sha256) == ("bc-v1", "bc", True, "a" * 64)
    assert entries[name_key("team-a", "bc-v1")] is info


def test_given_a_model_and_a_version_of_equal_name_when_indexed_then_their_keys_differ():
    # a version named like a model must not be returned as "all versions of that model"
    lookup = dict_lookup([mv("team-a", "bc", model="other")])
    assert list(lookup(model_key("team-a", "bc"))) == []
    assert [v.model for v in lookup(name_key("team-a", "bc"))] == ["other"]


def test_given_equal_model_names_in_two_namespaces_when_a_pass_looks_up_then_it_sees_only_its_own():
    lookup = dict_lookup(WORLD)
    assert set(observed_versions(lookup, "team-a", "bc", ())) == {"bc-v1", "bc-v2"}
    assert set(observed_versions(lookup, "team-b", "bc", ())) == {"bc-v1", "bc-v9"}
    a_v1 = observed_versions(lookup, "team-a", "bc", ())["bc-v1"]
    assert a_v1.artifact_uri == "s3://b/models/team-a/bc/bc-v1/"
    assert observed_versions(lookup, "team-c", "bc", ()) == {}


def test_given_other_models_when_a_pass_looks_up_then_only_named_ones_are_added():
    lookup = dict_lookup(WORLD)
    assert "iris-v1" not in observed_versions(lookup, "team-a", "bc", ())
    seen = observed_versions(lookup, "team-a", "bc", {"iris-v1", "gone", "bc-v1"})
    assert set(seen) == {"bc-v1", "bc-v2", "iris-v1"}  # a missing name adds nothing
    assert seen["iris-v1"].model == "iris"


def test_given_spec_and_status_when_named_versions_then_every_referenced_version_is_collected():
    status = RolloutStatus.from_dict({
        "desiredVersion": "bc-v3", "stableVersion": "bc-v1", "candidateVersion": "bc-v2",
        "abortedVersion": "bc-v0", "blockedVersions": ["bc-v4", "bc-v5"],
        "postPromotion": {"version": "bc-v1", "previous": "bc-old", "startedAt": "2026-01-01T00:00:00Z",
                          "until": "2026-01-01T00:10:00Z"},
        "phase": "Progressing"})
    assert named_versions("bc-v3", status) == {"bc-v0", "bc-v1", "bc-v2", "bc-v3", "bc-v4", "bc-v5", "bc-old"}
    assert named_versions(None, RolloutStatus.from_dict({})) == set()


def deployment(**spec: Any) -> ModelDeployment:
    return ModelDeployment.from_body({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
                                      "metadata": {"name": "bc", "namespace": "team-a"},
                                      "spec": {"model": "bc", **spec}})


def resolved(md: ModelDeployment, bodies: list[dict[str, Any]], namespace: str = "team-a"):
    versions = observed_versions(dict_lookup(bodies), namespace, md.spec.model,
                                 named_versions(md.spec.version, RolloutStatus.from_dict({})))
    return resolve(md.spec, Observations(namespace=namespace, name="bc", versions=versions, workloads={}))


def test_given_track_when_a_version_turns_ready_in_the_index_then_the_next_pass_follows_it():
    md = deployment(track={"policy": "latestReady"})
    world = [mv("team-a", "bc-v1", minute=1), mv("team-a", "bc-v2", phase="Validating", minute=2)]
    assert resolved(md, world).version == "bc-v1"
    world[1] = mv("team-a", "bc-v2", minute=2)
    assert resolved(md, world).version == "bc-v2"
    # a newer Ready version of the same model in another namespace is not followed
    assert resolved(md, [*world, mv("team-b", "bc-v9", minute=9)]).version == "bc-v2"


def test_given_a_pinned_version_of_another_model_when_resolved_from_the_index_then_it_is_a_mismatch_not_missing():
    md = deployment(version="iris-v1")
    desired = resolved(md, WORLD)
    assert desired.version is None
    assert [p.reason for p in desired.problems] == ["ModelMismatch"]
    missing = resolved(deployment(version="bc-v7"), WORLD)
    assert [p.reason for p in missing.problems] == ["ModelVersionNotFound"]
