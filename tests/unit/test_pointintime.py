"""Point-in-time training sets: the as-of join (ties, time zones, max age, drop counts), the snapshot that
keeps each entity's history, the labels spec the trainer reads, and the leak trap trained in-process."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pandas as pd
import pytest

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.features.online import event_seconds, latest_vectors, utc_times
from mlops_operator.features.pointintime import AS_OF_RULE, NoLabelsJoined, as_of_join, require_rows
from mlops_operator.features.snapshot import build_snapshot
from mlops_operator.features.transform import fit_transform_doc
from mlops_operator.logic.modelversion import labels_lineage
from mlops_operator.runtime.train import fit_evaluate
from mlops_operator.runtime.train_config import FeatureSetRef, InvalidInput, Training, parse_training
from mlops_operator.runtime.train_estimator import build_estimator
from mlops_operator.runtime.train_metrics import select_metrics, task_of
from mlops_operator.runtime.train_pointintime import point_in_time_data
from tests import leak_trap as trap

pytestmark = pytest.mark.unit

URI = "s3://mlops/features/team-a/churn/v1/"
LABELS = {"source": {"uri": "s3://mlops/labels/churn.csv"}, "timestampColumn": trap.LABEL_TIME,
          "labelColumn": trap.LABEL}


def features(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "ts", "x"])


def labels(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "t", "y"])


def join(f: pd.DataFrame, l: pd.DataFrame, max_age: timedelta | None = None):
    return as_of_join(f, "id", "ts", ["x"], l, "id", "t", "y", max_age)


# ------------------------------------------------------------------------------------------ the join

def test_given_values_before_at_and_after_a_label_then_the_latest_at_or_before_it_is_joined():
    f = features(("a", "2026-01-01T00:00:00Z", 1.0), ("a", "2026-01-01T01:00:00Z", 2.0),
                 ("a", "2026-01-01T02:00:00Z", 3.0))
    rows, report = join(f, labels(("a", "2026-01-01T01:30:00Z", 0), ("a", "2026-01-01T00:59:59Z", 1)))
    assert rows["x"].tolist() == [2.0, 1.0] and rows["y"].tolist() == [0, 1]  # the labels' order
    assert report.as_dict() == {"labels": 2, "joined": 2, "dropped": {"invalid": 0, "noFeatureValue": 0, "tooOld": 0}}


def test_given_a_value_recorded_exactly_at_the_label_time_then_it_counts_as_known():
    f = features(("a", "2026-01-01T00:00:00Z", 1.0), ("a", "2026-01-01T01:00:00Z", 2.0))
    rows, _ = join(f, labels(("a", "2026-01-01T01:00:00Z", 1)))
    assert rows["x"].tolist() == [2.0]
    assert "equal times count as known" in AS_OF_RULE


def test_given_only_a_value_one_nanosecond_after_the_label_then_the_label_is_dropped_as_having_no_value():
    f = features(("a", pd.Timestamp("2026-01-01T01:00:00.000000001Z"), 9.0))
    rows, report = join(f, labels(("a", pd.Timestamp("2026-01-01T01:00:00Z"), 1)))
    assert rows.empty and report.dropped["noFeatureValue"] == 1


def test_given_time_zones_offsets_naive_and_epoch_times_then_instants_are_compared():
    # 03:00+02:00 is 01:00 UTC: the value at 00:30 UTC is known, the one at 01:30 UTC (02:30 "local" text
    # sorts before 03:00 but is later) is not.
    f = features(("a", "2026-01-01T00:30:00", 1.0), ("a", "2026-01-01T01:30:00+00:00", 2.0))
    rows, _ = join(f, labels(("a", "2026-01-01T03:00:00+02:00", 1)))
    assert rows["x"].tolist() == [1.0]
    epoch = pd.Timestamp("2026-01-01T01:00:00Z").timestamp()
    tz_aware = features(("a", pd.Timestamp("2026-01-01T01:59:00", tz="Europe/Paris"), 5.0))  # 00:59 UTC
    rows, _ = join(tz_aware, labels(("a", epoch, 1)))  # epoch seconds of 01:00 UTC
    assert rows["x"].tolist() == [5.0]


def test_given_max_age_then_older_values_drop_the_label_and_the_bound_is_inclusive():
    f = features(("a", "2026-01-01T00:00:00Z", 1.0), ("b", "2026-01-01T00:00:00Z", 2.0))
    l = labels(("a", "2026-01-01T01:00:00Z", 1), ("b", "2026-01-01T01:00:01Z", 0))
    rows, report = join(f, l, max_age=timedelta(hours=1))
    assert rows["x"].tolist() == [1.0]
    assert report.dropped == {"invalid": 0, "noFeatureValue": 0, "tooOld": 1}
    rows, report = join(f, l)  # without a bound both are joined
    assert report.joined == 2


def test_given_entities_as_numbers_and_text_then_they_match_and_other_entities_never_do():
    f = pd.DataFrame({"id": [42, 7], "ts": ["2026-01-01T00:00:00Z"] * 2, "x": [1.0, 2.0]})
    rows, report = join(f, labels(("42", "2026-01-02T00:00:00Z", 1), (42.0, "2026-01-02T00:00:00Z", 0),
                                  ("8", "2026-01-02T00:00:00Z", 1)))
    assert rows["x"].tolist() == [1.0, 1.0] and report.dropped["noFeatureValue"] == 1


def test_given_integer_entities_on_both_sides_then_equal_integers_match_and_others_never_do():
    f = pd.DataFrame({"id": [1, 2, 3], "ts": ["2026-01-01T00:00:00Z"] * 3, "x": [1.0, 2.0, 3.0]})
    rows, report = join(f, pd.DataFrame({"id": [3, 1, 4], "t": ["2026-01-02T00:00:00Z"] * 3, "y": [1, 0, 1]}))
    assert rows["x"].tolist() == [3.0, 1.0] and report.dropped["noFeatureValue"] == 1


def test_given_labels_missing_an_entity_time_or_label_and_features_missing_a_time_then_counted_never_joined():
    f = features(("a", None, 5.0), ("b", "2026-01-01T00:00:00Z", 1.0))
    l = labels(("a", "2026-01-02T00:00:00Z", 1), (None, "2026-01-02T00:00:00Z", 1), ("b", None, 1),
               ("b", "2026-01-02T00:00:00Z", None), ("b", "2026-01-02T00:00:00Z", 0))
    rows, report = join(f, l)
    assert rows["x"].tolist() == [1.0] and rows["y"].tolist() == [0]
    assert report.dropped == {"invalid": 3, "noFeatureValue": 1, "tooOld": 0}


def test_given_nullable_int_features_then_their_dtype_survives_the_join():
    f = pd.DataFrame({"id": ["a", "b"], "ts": ["2026-01-01T00:00:00Z"] * 2,
                      "x": pd.array([3, None], dtype="Int64")})
    rows, _ = join(f, labels(("a", "2026-01-02T00:00:00Z", 1), ("b", "2026-01-02T00:00:00Z", 0)))
    assert str(rows["x"].dtype) == "Int64" and rows["x"].isna().tolist() == [False, True]


def test_given_a_column_that_is_not_time_then_invalid_input_names_it():
    with pytest.raises(InvalidInput, match="column 't' does not hold event times"):
        join(features(("a", "2026-01-01T00:00:00Z", 1.0)), labels(("a", "yesterday-ish", 1)))
    with pytest.raises(InvalidInput, match="the labels lack.*'y'"):
        as_of_join(features(), "id", "ts", ["x"], labels().drop(columns="y"), "id", "t", "y")
    with pytest.raises(InvalidInput, match="the label column 'x' is also a feature of the snapshot"):
        as_of_join(features(), "id", "ts", ["x"], labels().rename(columns={"y": "x"}), "id", "t", "x")


def test_given_a_mixed_format_time_column_then_training_and_online_read_the_same_instants():
    stamps = pd.Series(["2026-01-01T00:00:00Z", "2026-01-01 02:30:00+02:00", "2026-01-01T01:00:00.5", None])
    assert utc_times(stamps, "t").astype("int64")[:3].tolist() == [
        pd.Timestamp(t).value for t in ("2026-01-01T00:00:00Z", "2026-01-01T00:30:00Z", "2026-01-01T01:00:00.5Z")]
    seconds = event_seconds(stamps, "t")
    assert seconds[:3].tolist() == [t.value / 1e9 for t in pd.to_datetime(stamps[:3], utc=True, format="mixed")]
    assert pd.isna(seconds[3]) and pd.isna(utc_times(stamps, "t")[3])
    frame = pd.DataFrame({"id": ["a", "a", "a"], "ts": stamps[:3], "x": [1.0, 2.0, 3.0]})
    latest = {e: json.loads(v) for e, v in latest_vectors(frame, "id", ["x"], "ts", 0.0)}
    rows, _ = join(frame, labels(("a", "2026-01-02T00:00:00Z", 1)))
    assert latest["a"]["v"] == rows["x"].tolist() == [3.0]  # the same row is the newest for both
    for bad in (pd.Series([True, False]), pd.Series([1.0, float("inf")])):
        for read in (utc_times, event_seconds):
            with pytest.raises(InvalidInput, match="column 't' does not hold event times"):
                read(bad, "t")


def test_given_every_label_dropped_then_no_labels_joined_names_each_cause():
    f = features(("a", "2026-01-01T00:00:00Z", 1.0))
    l = labels(("a", "2026-01-03T00:00:00Z", 1), ("a", "2025-12-31T00:00:00Z", 0), ("z", "2026-01-03T00:00:00Z", 1))
    _, report = join(f, l, max_age=timedelta(hours=1))
    with pytest.raises(NoLabelsJoined, match=r"of 3 label row\(s\), 2 have no feature value at or before their "
                                             r"time; 1 have only values older than maxAge 1:00:00"):
        require_rows(report, timedelta(hours=1), "the labels")
    assert isinstance(NoLabelsJoined("x"), InvalidInput)  # exit 2: retrying the same data cannot help


# ------------------------------------------------------------------------- the snapshot keeps history

def fs_spec(**extra) -> FeatureSetSpec:
    return FeatureSetSpec.model_validate({"source": {"builtin": "iris"}, "entityKey": trap.ENTITY,
                                          "features": [{"name": "signal"}, {"name": "noise"}], **extra})


def test_given_a_timestamp_column_then_the_snapshot_keeps_every_entity_event_and_online_keeps_the_latest():
    source, _ = trap.leak_trap(entities=5)
    snap = build_snapshot(fs_spec(timestampColumn=trap.FEATURE_TIME), source, "the source")
    assert len(snap.frame) == 10 and snap.frame[trap.ENTITY].nunique() == 5
    latest = dict(latest_vectors(snap.frame, trap.ENTITY, list(trap.FEATURES), trap.FEATURE_TIME, 0.0))
    last = source.groupby(trap.ENTITY).last()  # rows are written in time order per entity
    assert {e: json.loads(v)["v"][0] for e, v in latest.items()} == last["signal"].to_dict()


def test_given_repeated_entity_and_time_then_refused_but_repeated_entities_alone_need_a_timestamp_column():
    source, _ = trap.leak_trap(entities=3)
    doubled = pd.concat([source, source.iloc[[0]]])
    with pytest.raises(InvalidInput, match=r"\(entityKey, timestampColumn\) = \('customer_id', 'event_time'\) is "
                                           r"not unique: 1 value\(s\)"):
        build_snapshot(fs_spec(timestampColumn=trap.FEATURE_TIME), doubled, "the source")
    with pytest.raises(InvalidInput, match="entityKey column 'customer_id' is not unique"):
        build_snapshot(fs_spec(), source, "the source")


# --------------------------------------------------------------------------------- spec and trainer

def pit_training(**labels_extra) -> Training:
    return parse_training(json.dumps({
        "featureSet": {"name": "churn", "labels": {**LABELS, **labels_extra}},
        "estimator": "sklearn.linear_model.LogisticRegression", "metrics": ["accuracy"],
        "split": {"testFraction": 0.25, "seed": 42}}))


def test_given_labels_in_the_training_spec_then_the_trainer_reads_them_and_refuses_what_cel_refuses():
    training = pit_training(maxAge="1h30m", entityColumn="cid")
    labels = training.feature_set.labels
    assert labels.max_age_delta == timedelta(minutes=90) and labels.entity_column == "cid"
    with pytest.raises(InvalidInput, match="labels.source.uri is required"):
        parse_training(json.dumps({"featureSet": {"name": "c", "labels": {**LABELS, "source": {"builtin": "iris"}}},
                                   "estimator": "sklearn.linear_model.LogisticRegression"}))
    with pytest.raises(InvalidInput, match="invalid duration"):
        pit_training(maxAge="1d")


def snapshot_of(source: pd.DataFrame, **spec) -> tuple[pd.DataFrame, dict]:
    fs = fs_spec(**spec)
    snap = build_snapshot(fs, source, "the source")
    rows = pd.read_parquet(io.BytesIO(snap.frame.to_parquet(index=False)))
    return rows, fit_transform_doc(fs, snap.frame, feature_set="churn", version="v1")


def train_point_in_time(source: pd.DataFrame, label_rows: pd.DataFrame, training: Training):
    rows, doc = snapshot_of(source, timestampColumn=trap.FEATURE_TIME)
    data = point_in_time_data(rows, doc, training.feature_set, URI, "d" * 64, label_rows, "e" * 64)
    estimator = build_estimator(training.estimator, {})
    task = task_of(estimator)
    return data, fit_evaluate(training, estimator, task, select_metrics(training.metrics, task, estimator), data)


def test_given_the_leak_trap_then_point_in_time_training_is_near_chance_where_a_latest_join_is_perfect():
    source, label_rows = trap.leak_trap()
    assert trap.accuracy_of(trap.naive_latest_join(source, label_rows)) >= 0.99  # the trap is real
    data, fitted = train_point_in_time(source, label_rows, pit_training())
    assert fitted.metrics["accuracy"] <= 0.65, fitted.metrics
    assert data.labels["joined"] == 400 and data.labels["asOf"] == AS_OF_RULE
    assert data.labels["source"] == LABELS["source"]["uri"] and data.labels["sha256"] == "e" * 64
    assert data.source == f"featureset:churn/v1+labels:{LABELS['source']['uri']}"
    # The same code on data whose signal is known at label time learns it: the join is not just noise.
    source, label_rows = trap.leak_trap(honest=True)
    _, fitted = train_point_in_time(source, label_rows, pit_training())
    assert fitted.metrics["accuracy"] >= 0.99, fitted.metrics


def test_given_max_age_shorter_than_every_gap_then_training_fails_naming_the_cause():
    source, label_rows = trap.leak_trap(entities=20)
    with pytest.raises(NoLabelsJoined, match=r"training.featureSet.labels \(s3://mlops/labels/churn.csv\).*"
                                             r"20 have only values older than maxAge 0:10:00"):
        train_point_in_time(source, label_rows, pit_training(maxAge="10m"))


def test_given_a_featureset_without_timestamp_column_or_a_labels_column_absent_then_invalid_input_names_it():
    source, label_rows = trap.leak_trap(entities=4)
    latest = source.groupby(trap.ENTITY, as_index=False).last()
    rows, doc = snapshot_of(latest)
    ref = pit_training().feature_set
    with pytest.raises(InvalidInput, match="FeatureSet churn has no timestampColumn"):
        point_in_time_data(rows, doc, ref, URI, "d" * 64, label_rows, "e" * 64)
    rows, doc = snapshot_of(source, timestampColumn=trap.FEATURE_TIME)
    with pytest.raises(InvalidInput, match="training.featureSet.labels.labelColumn: column 'churned' not found"):
        point_in_time_data(rows, doc, ref, URI, "d" * 64, label_rows.drop(columns=trap.LABEL), "e" * 64)
    with pytest.raises(InvalidInput, match=f"data.parquet lacks column\\(s\\) '{trap.FEATURE_TIME}' that transform.json"):
        point_in_time_data(rows.drop(columns=trap.FEATURE_TIME), doc, ref, URI, "d" * 64, label_rows, "e" * 64)
    other = FeatureSetRef.model_validate({"name": "other", "labels": LABELS})
    with pytest.raises(InvalidInput, match="belongs to FeatureSet 'churn', not 'other'"):
        point_in_time_data(rows, doc, other, URI, "d" * 64, label_rows, "e" * 64)


def test_given_labels_then_lineage_has_the_source_before_training_and_the_rule_and_counts_after():
    labels = pit_training(maxAge="2h").feature_set.labels
    assert labels_lineage(None) is None
    assert labels_lineage(labels) == {"source": LABELS["source"]["uri"], "maxAge": "2h"}
    report = {"asOf": AS_OF_RULE, "labels": 5, "joined": 4, "dropped": {"tooOld": 1, "x": "junk"}, "sha256": "e"}
    assert labels_lineage(labels, report) == {"source": LABELS["source"]["uri"], "maxAge": "2h", "asOf": AS_OF_RULE,
                                              "labels": 5, "joined": 4, "dropped": {"tooOld": 1}}


def test_given_no_label_joined_then_the_trainer_exits_as_invalid_input_with_its_own_reason():
    from mlops_operator.runtime.train import EXIT_INVALID_INPUT, _outcome

    assert _outcome(NoLabelsJoined("no label row ...")) == (EXIT_INVALID_INPUT, "NoLabelsJoined")
    assert _outcome(InvalidInput("other")) == (EXIT_INVALID_INPUT, "InvalidInput")
