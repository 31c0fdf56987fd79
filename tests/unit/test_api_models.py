"""The pydantic models: examples round-trip, helpers (conditions, durations, estimator allowlist) behave."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mlops_operator.api.v1alpha1 import (
    API_VERSION,
    ESTIMATOR_ALLOWLIST,
    KINDS,
    ModelDeployment,
    ModelVersion,
    get_condition,
    is_allowed_estimator,
    is_condition_true,
    kind_info,
    parse_duration,
    set_condition,
)
from mlops_operator.api.v1alpha1.training import TrainingSpec

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _is_subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_is_subset, small, big))
    return small == big


# ---------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_given_the_example_of_a_kind_when_parsed_and_dumped_then_nothing_the_user_wrote_is_lost(kind):
    raw = _load(EXAMPLES / f"{kind.lower()}.yaml")
    obj = kind_info(kind).model.model_validate(raw)
    dumped = obj.to_dict()
    assert dumped["apiVersion"] == API_VERSION and dumped["kind"] == kind
    assert _is_subset(raw["spec"], dumped["spec"])
    assert kind_info(kind).model.model_validate(dumped) == obj


def test_given_every_example_file_then_each_kind_has_exactly_one():
    kinds = sorted(_load(p)["kind"] for p in EXAMPLES.glob("*.yaml"))
    assert kinds == sorted(k.kind for k in KINDS)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.stem)
def test_given_an_invalid_example_when_parsed_then_the_model_rejects_it_at_the_named_field(path):
    raw = _load(path)
    expected_field = next(line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                          if line.startswith("# expect-field:"))
    with pytest.raises(ValidationError) as err:
        kind_info(raw["kind"]).model.model_validate(raw)
    locations = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    # pydantic writes spec.space.max_depth.min where the apiserver writes spec.space[max_depth].min
    wanted = expected_field.replace("[", ".").replace("]", "")
    assert any(loc.startswith(wanted) or wanted.startswith(loc) for loc in locations), locations


def test_given_a_kopf_like_read_only_body_when_parsed_then_a_typed_object_with_defaults_results():
    raw = _load(EXAMPLES / "modeldeployment.yaml")
    body = MappingProxyType({**raw, "spec": MappingProxyType(raw["spec"]), "status": {"phase": "Progressing"}})
    md = ModelDeployment.from_body(body)
    assert md.spec.strategy.canary.steps[1].weight == 50
    assert md.spec.analysis.min_samples == 50
    assert md.status.phase == "Progressing"
    assert md.spec.strategy.type == "Canary"  # enums are plain strings for handlers


def test_given_a_status_written_by_a_newer_operator_when_parsed_then_unknown_status_fields_are_ignored():
    raw = _load(EXAMPLES / "modelversion.yaml")
    raw["status"] = {"phase": "Ready", "futureField": 1, "metrics": {"accuracy": 0.97},
                     "primaryMetric": {"name": "accuracy", "value": 0.97}}
    mv = ModelVersion.model_validate(raw)
    assert mv.status.phase == "Ready" and mv.status.metrics == {"accuracy": 0.97}


def test_given_a_typo_in_a_spec_field_when_parsed_then_it_is_rejected_not_ignored():
    raw = _load(EXAMPLES / "modelversion.yaml")
    raw["spec"]["trainning"] = raw["spec"].pop("training")
    with pytest.raises(ValidationError, match="trainning"):
        ModelVersion.model_validate(raw)


def test_given_python_names_when_building_a_spec_then_aliases_are_written():
    spec = TrainingSpec(dataset={"builtin": "iris"}, estimator="sklearn.tree.DecisionTreeClassifier",
                        split={"test_fraction": 0.3})
    out = spec.to_dict()
    assert out["split"]["testFraction"] == 0.3 and "featureSet" not in out and out["timeout"] == "30m"


# -------------------------------------------------------------------------------------------- conditions


def _ready(conditions, status, now, reason="Trained", message="ok", generation=1):
    return set_condition(conditions, type="Ready", status=status, reason=reason, message=message,
                         observed_generation=generation, now=now)


def test_given_no_conditions_when_set_then_one_condition_with_the_transition_time_now():
    assert _ready([], "True", T0) == [{"type": "Ready", "status": "True", "reason": "Trained", "message": "ok",
                                      "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": 1}]


def test_given_the_same_status_when_set_later_then_transition_time_is_kept_and_the_rest_updated():
    first = _ready([], True, T0)
    later = _ready(first, True, T0 + timedelta(minutes=5), reason="Validated", message="gates passed", generation=2)
    assert later[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert (later[0]["reason"], later[0]["message"], later[0]["observedGeneration"]) == ("Validated", "gates passed", 2)


def test_given_a_status_change_when_set_then_transition_time_moves_and_input_is_untouched():
    first = _ready([], "True", T0)
    snapshot = [dict(c) for c in first]
    changed = _ready(first, "False", T0 + timedelta(minutes=5))
    assert changed[0]["lastTransitionTime"] == "2024-05-01T12:05:00Z"
    assert first == snapshot


def test_given_an_identical_verdict_when_set_again_then_the_list_is_equal_so_no_write_is_needed():
    first = _ready([], "True", T0)
    assert _ready(first, "True", T0 + timedelta(hours=1)) == first


def test_given_other_conditions_when_one_is_set_then_order_and_others_are_kept():
    conds = set_condition([], type="Progressing", status="True", reason="A", message="", observed_generation=None,
                          now=T0)
    conds = _ready(conds, "False", T0)
    conds = set_condition(conds, type="Progressing", status="False", reason="B", message="", observed_generation=None,
                          now=T0)
    assert [c["type"] for c in conds] == ["Progressing", "Ready"]
    assert "observedGeneration" not in conds[0]
    assert get_condition(conds, "Ready")["status"] == "False"
    assert get_condition(conds, "Missing") is None
    assert not is_condition_true(conds, "Ready") and not is_condition_true(conds, "Missing")


def test_given_a_naive_or_offset_clock_when_set_then_utc_is_written():
    naive = datetime(2024, 5, 1, 12, 0, 0)
    offset = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert _ready([], "True", naive)[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert _ready([], "True", offset)[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_given_a_bad_condition_status_when_set_then_value_error():
    with pytest.raises(ValueError, match="True, False or Unknown"):
        _ready([], "yes", T0)


# --------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize("text,expected", [
    ("30s", timedelta(seconds=30)), ("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)),
    ("1h30m", timedelta(minutes=90)), ("2h0m5s", timedelta(hours=2, seconds=5)), ("0s", timedelta(0)),
])
def test_given_a_duration_when_parsed_then_the_timedelta_matches(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "30", "1.5h", "5m1h", "1d", "-5m", "5 m", "1234567s"])
def test_given_a_malformed_duration_when_parsed_then_value_error_names_the_value(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "h", "1.5h", "5m1h"])
def test_given_a_malformed_duration_in_a_spec_then_the_model_rejects_it(text):
    with pytest.raises(ValidationError, match="timeout"):
        TrainingSpec(dataset={"builtin": "iris"}, estimator="sklearn.tree.DecisionTreeClassifier", timeout=text)


# ----------------------------------------------------------------------------------------------- estimator


@pytest.mark.parametrize("path", [
    "sklearn.ensemble.RandomForestClassifier", "sklearn.linear_model.LogisticRegression",
    "sklearn.tree.DecisionTreeRegressor", "sklearn.svm.SVC",
])
def test_given_an_allowlisted_estimator_then_it_is_allowed(path):
    assert is_allowed_estimator(path)


@pytest.mark.parametrize("path", [
    "os.system", "sklearn.utils.Bunch", "sklearn.ensemble.randomForest", "sklearn.ensemble.RandomForest;rm",
    "sklearn.ensemblex.RandomForestClassifier", "sklearn..RandomForestClassifier", "", "sklearn.ensemble",
    "sklearn.ensemble.__class__",
])
def test_given_a_path_outside_the_allowlist_then_it_is_refused_by_helper_and_model(path):
    assert not is_allowed_estimator(path)
    with pytest.raises(ValidationError, match="estimator"):
        TrainingSpec(dataset={"builtin": "iris"}, estimator=path)


def test_given_the_trainers_own_allowlist_then_it_is_the_same_set_of_modules():
    from mlops_operator.runtime.train_estimator import ALLOWED_MODULES

    assert set(ESTIMATOR_ALLOWLIST) == set(ALLOWED_MODULES)
