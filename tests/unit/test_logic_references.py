"""References: what is missing, InvalidSpec that sets and clears, Accepted for validate-only kinds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.training import Gates, TrainingSpec
from mlops_operator.logic.references import (
    Problem,
    Reference,
    apply_invalid_spec,
    check_references,
    snapshot,
    training_references,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
FS = {"spec": {}, "status": {"latestVersion": "v2", "versions": [{"version": "v1", "uri": "s3://b/features/f/v1/"},
                                                                 {"version": "v2", "uri": "s3://b/features/f/v2/"}]}}
MV = Reference("ModelVersion", "bc-v7", "spec.version", model="breast-cancer")


def test_given_training_with_featureset_and_gate_when_listed_then_both_references_with_fields():
    training = TrainingSpec.model_validate({"featureSet": {"name": "bc-features", "version": "v1"},
                                            "estimator": "sklearn.tree.DecisionTreeClassifier"})
    gates = Gates.model_validate({"mustBeatStable": {"modelDeployment": "bc", "metric": "accuracy"}})
    assert training_references(training, gates, prefix="spec.template") == [
        Reference("FeatureSet", "bc-features", "spec.template.training.featureSet.name", version="v1"),
        Reference("ModelDeployment", "bc", "spec.template.gates.mustBeatStable.modelDeployment"),
    ]


@pytest.mark.parametrize("spec, problem", [
    ({"entityKey": "id", "timestampColumn": "ts"}, None),
    ({"entityKey": "id"}, "has no timestampColumn;"),
    ({}, "has no entityKey and no timestampColumn;"),
])
def test_given_point_in_time_labels_when_checked_then_the_featureset_must_keep_a_history(spec, problem):
    training = TrainingSpec.model_validate({
        "featureSet": {"name": "churn", "labels": {"source": {"uri": "s3://mlops/labels.csv"}, "timestampColumn": "t",
                                                   "labelColumn": "y"}},
        "estimator": "sklearn.tree.DecisionTreeClassifier"})
    (ref,) = training_references(training, None)
    assert ref.history
    problems = check_references([ref], {ref: {"spec": spec}}, "team-a")
    if problem is None:
        assert problems == []
    else:
        (found,) = problems
        assert found.reason == "FeatureSetWithoutHistory"
        assert found.message.startswith("spec.training.featureSet.labels: FeatureSet 'churn' ") and problem in \
            found.message, found.message
    # Without labels the same FeatureSet is fine: its own target is the label.
    plain = Reference("FeatureSet", "churn", "spec.training.featureSet.name")
    assert check_references([plain], {plain: {"spec": spec}}, "team-a") == []


def test_given_dataset_training_without_gates_when_listed_then_no_references():
    training = TrainingSpec.model_validate({"dataset": {"builtin": "iris"},
                                            "estimator": "sklearn.tree.DecisionTreeClassifier"})
    assert training_references(training, None) == []


@pytest.mark.parametrize("ref, target, reason", [
    (MV, None, "ModelVersionNotFound"),
    (Reference("FeatureSet", "f", "spec.training.featureSet.name"), None, "FeatureSetNotFound"),
    (Reference("ModelDeployment", "bc", "spec.gates.mustBeatStable.modelDeployment"), None, "ModelDeploymentNotFound"),
    (Reference("FeatureSet", "f", "x", version="v9"), FS, "FeatureSetVersionNotFound"),
    (MV, {"spec": {"model": "iris"}}, "ModelMismatch"),
])
def test_given_dangling_or_wrong_reference_when_checked_then_reason_names_it(ref, target, reason):
    (problem,) = check_references([ref], {ref: target}, "team-a")
    assert problem.reason == reason
    assert ref.field in problem.message and ref.name in problem.message


@pytest.mark.parametrize("ref, target", [
    (MV, {"spec": {"model": "breast-cancer"}}),
    (Reference("FeatureSet", "f", "x", version="v1"), FS),
    (Reference("FeatureSet", "f", "x"), {"spec": {}}),  # exists; waiting for a snapshot is not InvalidSpec
])
def test_given_resolvable_reference_when_checked_then_no_problem(ref, target):
    assert check_references([ref], {ref: target}, "team-a") == []


@pytest.mark.parametrize("version, expected", [("", "v2"), ("v1", "v1"), ("v9", None)])
def test_given_featureset_status_when_snapshot_resolved_then_latest_or_named(version, expected):
    found = snapshot(FS, version)
    assert (found or {}).get("version") == expected


def test_given_featureset_without_ready_snapshot_when_resolved_then_none():
    assert snapshot({"status": {}}, "") is None


def test_given_problem_then_fixed_when_applied_then_invalid_spec_sets_with_warning_and_clears_with_normal():
    problems = [Problem("ModelVersionNotFound", "spec.version: ModelVersion 'bc-v7' not found")]
    conditions, events = apply_invalid_spec(None, problems, generation=1, now=NOW)
    cond = get_condition(conditions, "InvalidSpec")
    assert (cond["status"], cond["reason"]) == ("True", "ModelVersionNotFound")
    assert [(e.type, e.reason) for e in events] == [("Warning", "ModelVersionNotFound")]

    again, events = apply_invalid_spec(conditions, problems, generation=1, now=NOW + timedelta(minutes=1))
    assert again == conditions and events == []  # same verdict: no write, no event

    cleared, events = apply_invalid_spec(conditions, [], generation=1, now=NOW + timedelta(minutes=2))
    cond = get_condition(cleared, "InvalidSpec")
    assert (cond["status"], cond["reason"]) == ("False", "Valid")
    assert cond["lastTransitionTime"] == "2026-03-01T12:02:00Z"
    assert [(e.type, e.reason) for e in events] == [("Normal", "ReferencesResolved")]


