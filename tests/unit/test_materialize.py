"""The pure parts of ``mlops-materialize``: snapshot columns, configuration, outcomes, termination message."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.features.snapshot import ROW_KEY, build_snapshot
from mlops_operator.providers.storage import AccessDenied, IntegrityError, StorageUnavailable
from mlops_operator.runtime import materialize as mat
from mlops_operator.runtime.train_config import InvalidInput

pytestmark = pytest.mark.unit

SPEC = {"source": {"builtin": "breast_cancer"}, "target": "target"}
ENV = {
    "MLOPS_FEATURESET": "bc",
    "MLOPS_FEATURESET_UID": "uid-1",
    "MLOPS_FEATURESET_SPEC": json.dumps(SPEC),
    "MLOPS_SNAPSHOT_VERSION": "v2",
    "MLOPS_SNAPSHOT_PREFIX": "s3://mlops/features/bc/v2",
}
SOURCE = pd.DataFrame({
    "id": [10, 11, 12],
    "ts": ["2026-01-01", "2026-01-02", "2026-01-03"],
    "amount": ["1.5", "2", None],
    "n": [1.0, 2.0, np.nan],
    "flag": ["yes", "no", None],
    "city": [3, "x", None],
    "label": [0, 1, 0],
})


def spec(**extra) -> FeatureSetSpec:
    return FeatureSetSpec.model_validate({"source": {"builtin": "iris"}, **extra})


FEATURES = [{"name": "amount"}, {"name": "n", "dtype": "int"}, {"name": "flag", "dtype": "bool"},
            {"name": "city", "dtype": "category", "transform": "onehot"}]


# --- snapshot frame -------------------------------------------------------------------------------------

def test_given_a_source_when_snapshot_built_then_key_timestamp_cast_features_and_target_in_order():
    snap = build_snapshot(spec(entityKey="id", timestampColumn="ts", target="label", features=FEATURES), SOURCE, "src")
    frame = snap.frame
    assert list(frame.columns) == ["id", "ts", "amount", "n", "flag", "city", "label"]
    assert [str(t) for t in frame.dtypes] == ["int64", "object", "float64", "Int64", "boolean", "object", "int64"]
    assert frame["amount"].tolist()[:2] == [1.5, 2.0] and np.isnan(frame["amount"][2])
    assert frame["n"].tolist()[:2] == [1, 2] and frame["n"].isna()[2]
    assert frame["flag"].tolist()[:2] == [True, False] and frame["flag"].isna()[2]
    assert frame["city"].tolist() == ["3", "x", None]
    assert snap.entity_key == "id"


def test_given_no_entity_key_when_snapshot_built_then_row_number_column_and_all_other_columns_are_float_features():
    source = pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25], "label": [1, 0]})
    snap = build_snapshot(spec(target="label"), source, "src")
    assert list(snap.frame.columns) == [ROW_KEY, "a", "b", "label"] and snap.frame[ROW_KEY].tolist() == [0, 1]
    assert [f.name for f in snap.features] == ["a", "b"] and str(snap.frame["a"].dtype) == "float64"


def test_given_a_feature_absent_from_the_source_when_snapshot_built_then_invalid_input_lists_available_columns():
    wide = pd.DataFrame({f"c{i}": [1.0] for i in range(15)})
    with pytest.raises(InvalidInput, match=r"'nope'.* not found in src; available columns: 'c0', .* and 5 more"):
        build_snapshot(spec(features=[{"name": "nope"}, {"name": "c1"}]), wide, "src")


@pytest.mark.parametrize("role,field", [("target", "target"), ("entityKey", "entityKey"),
                                        ("timestampColumn", "timestampColumn")])
def test_given_a_role_column_missing_when_snapshot_built_then_invalid_input_names_it(role, field):
    with pytest.raises(InvalidInput, match=f"{role} column 'ghost' not found in src; available columns: 'id'"):
        build_snapshot(spec(**{field: "ghost"}, features=[{"name": "amount"}]), SOURCE, "src")


def test_given_a_value_not_castable_when_snapshot_built_then_invalid_input_names_feature_and_value():
    source = pd.DataFrame({"amount": ["1.0", "twelve", "3"], "n": [1.0, 2.5, 3.0]})
    with pytest.raises(InvalidInput, match="'amount'.*1 value.*'twelve'"):
        build_snapshot(spec(features=[{"name": "amount"}]), source, "src")
    with pytest.raises(InvalidInput, match="'n' \\(dtype int\\).*whole numbers.*2.5"):
        build_snapshot(spec(features=[{"name": "n", "dtype": "int"}]), source, "src")


def test_given_duplicate_entity_keys_when_snapshot_built_then_invalid_input_says_how_many():
    source = pd.DataFrame({"id": [1, 2, 2, 3, 3, 3, 4], "x": [0.0] * 7})
    with pytest.raises(InvalidInput, match=r"'id' is not unique: 2 value\(s\) appear more than once \(5 rows\), e.g. 2, 3"):
        build_snapshot(spec(entityKey="id"), source, "src")


def test_given_an_empty_source_when_snapshot_built_then_invalid_input():
    with pytest.raises(InvalidInput, match="no rows"):
        build_snapshot(spec(), pd.DataFrame({"x": []}), "src")


# --- configuration ---------------------------------------------------------------------------------------

def test_given_the_job_environment_when_loaded_then_config_has_spec_version_and_prefix_as_directory():
    cfg = mat.load_config(ENV)
    assert (cfg.feature_set, cfg.feature_set_uid, cfg.version) == ("bc", "uid-1", "v2")
    assert str(cfg.prefix) == "s3://mlops/features/bc/v2/" and cfg.spec.target == "target"


@pytest.mark.parametrize("change,message", [
    ({"MLOPS_SNAPSHOT_VERSION": ""}, "MLOPS_SNAPSHOT_VERSION"),
    ({"MLOPS_SNAPSHOT_PREFIX": "http://x/y"}, "MLOPS_SNAPSHOT_PREFIX: not an s3:// URI"),
    ({"MLOPS_SNAPSHOT_PREFIX": "s3://mlops"}, "needs a key"),
    ({"MLOPS_FEATURESET_SPEC": "{not json"}, "not valid JSON"),
    ({"MLOPS_FEATURESET_SPEC": json.dumps({"source": {"builtin": "iris"}, "bogus": 1})}, "bogus"),
    ({"MLOPS_FEATURESET_SPEC": json.dumps({"source": {"builtin": "iris"},
                                           "features": [{"name": "x", "transform": "bucketize"}]})}, "boundaries"),
])
def test_given_a_bad_environment_when_loaded_then_invalid_input_names_the_problem(change, message):
    with pytest.raises(InvalidInput, match=message):
        mat.load_config({**ENV, **change})


def test_given_a_builtin_source_when_read_then_the_frame_has_the_target_column_and_lineage():
    frame, lineage = mat.read_source(None, FeatureSetSpec.model_validate(SPEC))
    assert frame.shape == (569, 31) and "target" in frame.columns
    assert lineage["builtin"] == "breast_cancer" and len(lineage["sha256"]) == 64


def test_given_a_uri_source_without_a_known_extension_when_read_then_invalid_input_asks_for_format():
    with pytest.raises(InvalidInput, match="source.format is required"):
        mat.read_source(None, spec(source={"uri": "s3://mlops/data/rows"}))


# --- outcomes and termination message ---------------------------------------------------------------------

@pytest.mark.parametrize("exc,expected", [
    (mat.QualityCheckFailed("q", {}), (2, "QualityCheckFailed")),
    (InvalidInput("x"), (2, "InvalidInput")),
    (mat.VersionTaken("x"), (4, "VersionTaken")),
    (AccessDenied("x"), (3, "AccessDenied")),
    (StorageUnavailable("x"), (3, "StorageUnavailable")),
    (IntegrityError("x"), (3, "StorageError")),
    (KeyError("x"), (1, "InternalError")),
])
def test_given_a_failure_when_classified_then_exit_code_and_reason(exc, expected):
    assert mat.outcome(exc) == expected


def test_given_a_huge_quality_report_when_compacted_then_fits_4kib_dropping_missing_fractions_then_violations():
    quality = {"passed": False, "rows": 10, "checkedAt": "2026-01-01T00:00:00Z",
               "violations": [{"feature": f"f{i}", "check": "max", "message": "x" * 80} for i in range(100)],
               "missingFraction": {f"feature_{i}": 0.123456 for i in range(300)}}
    doc = json.loads(mat.compact(mat.failure("QualityCheckFailed", "m" * 5000, 2, quality)))
    assert len(mat.compact(mat.failure("QualityCheckFailed", "m" * 5000, 2, quality))) <= 4096
    assert doc["ok"] is False and doc["exitCode"] == 2 and doc["truncated"] is True
    assert "missingFraction" not in doc["quality"] and doc["quality"]["violationsTotal"] == 100
    assert doc["quality"]["violations"][0]["feature"] == "f0"
    small = {"ok": True, "quality": {"passed": True, "violations": [], "missingFraction": {"x": 0.0}}}
    assert json.loads(mat.compact(small)) == small  # nothing dropped when it fits


def test_given_missing_environment_when_main_runs_then_exit_2_and_termination_log_says_invalid_input(monkeypatch, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "termination"
    monkeypatch.setenv("MLOPS_TERMINATION_LOG", str(log))
    assert mat.main() == 2
    doc = json.loads(log.read_text())
    assert doc["ok"] is False and doc["reason"] == "InvalidInput" and "MLOPS_FEATURESET" in doc["message"]
