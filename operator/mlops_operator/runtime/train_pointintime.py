"""Point-in-time training data: a FeatureSet snapshot's feature history joined with a labels file.

``training.featureSet.labels`` names a parquet/csv file of (entity, event time, label) rows. Each label is
joined with the feature values its entity had at that time, never later (``features.pointintime``), so a
value recorded after the label cannot leak into training. X stays RAW (the snapshot's ``inputColumns``) and
the snapshot's fitted transform travels with it, exactly as for a snapshot trained on its own target.

Labels without a value known at their time are dropped and counted (``labels.dropped`` in ``metrics.json``
and the log); when none is left, training fails (exit 2, ``NoLabelsJoined`` in the termination log) with a
message naming the cause.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from mlops_operator.features.pointintime import AS_OF_RULE, NoLabelsJoined, as_of_join, require_rows
from mlops_operator.providers.storage import ArtifactStore, S3Uri
from mlops_operator.runtime.train_config import FeatureSetRef, InvalidInput, Labels
from mlops_operator.runtime.train_data import TrainingData, read_file, read_snapshot, snapshot_columns, snapshot_identity

log = logging.getLogger("mlops.train")

__all__ = ["NoLabelsJoined", "load_point_in_time", "point_in_time_data"]


def history_columns(doc: Mapping[str, Any], name: str) -> tuple[str, str]:
    """(entity key, timestamp column) of the snapshot: point-in-time labels need both."""
    entity, stamp = doc.get("entityKey"), doc.get("timestampColumn")
    if not entity or not stamp:
        missing = " and ".join(f for f, v in (("entityKey", entity), ("timestampColumn", stamp)) if not v)
        raise InvalidInput(f"FeatureSet {name} has no {missing}: training.featureSet.labels joins labels with each "
                           "entity's feature history by event time, so the FeatureSet needs both")
    return str(entity), str(stamp)


def lineage_of(labels: Labels, sha256: str | None = None) -> dict[str, Any]:
    """What ``metrics.json`` (and the ModelVersion's lineage) records about the labels and the rule."""
    doc = {"source": labels.source.uri, "entityColumn": labels.entity_column, "timestampColumn": labels.timestamp_column,
           "labelColumn": labels.label_column, "maxAge": labels.max_age, "asOf": AS_OF_RULE, "sha256": sha256}
    return {k: v for k, v in doc.items() if v is not None}


def point_in_time_data(features: Any, doc: Any, ref: FeatureSetRef, uri: str, sha256: str,
                       labels_frame: Any, labels_sha256: str) -> TrainingData:
    """Join the labels with the snapshot rows; raw X, the label as y, the counts in ``labels``. No I/O."""
    labels = ref.labels
    assert labels is not None
    name, version = snapshot_identity(doc, ref, uri)
    entity, stamp = history_columns(doc, name)
    inputs = snapshot_columns(features, doc, uri, (entity, stamp))
    entity_column = labels.entity_column or entity
    where = f"training.featureSet.labels ({labels.source.uri})"
    for column, field in ((entity_column, "entityColumn"), (labels.timestamp_column, "timestampColumn"),
                          (labels.label_column, "labelColumn")):
        if column not in labels_frame.columns:
            shown = ", ".join(repr(str(c)) for c in list(labels_frame.columns)[:10])
            raise InvalidInput(f"training.featureSet.labels.{field}: column {column!r} not found in "
                               f"{labels.source.uri}; columns: {shown}")
    rows, report = as_of_join(features, entity, stamp, inputs, labels_frame, entity_column,
                              labels.timestamp_column, labels.label_column, labels.max_age_delta)
    log.info("point-in-time join of %d label row(s) with %d feature row(s) of %s/%s: %d joined, dropped %s",
             report.labels, len(features), name, version, report.joined, report.dropped)
    require_rows(report, labels.max_age_delta, where)
    record = {**lineage_of(labels, labels_sha256), **report.as_dict()}
    return TrainingData(rows[inputs], rows[labels.label_column], f"featureset:{name}/{version}+labels:{labels.source.uri}",
                        sha256, transform=doc, feature_set={"name": name, "version": version, "uri": uri},
                        labels=record)


def load_point_in_time(store: ArtifactStore, ref: FeatureSetRef, uri: S3Uri) -> TrainingData:
    """Read the snapshot (verified) and the labels file, then join them as of each label's time."""
    labels = ref.labels
    assert labels is not None and labels.source.uri is not None
    features, doc, sha256 = read_snapshot(store, uri)
    log.info("loading labels %s...", labels.source.uri)
    labels_frame, labels_sha256 = read_file(store, labels.source.uri, labels.source.format,
                                            "training.featureSet.labels.source")
    return point_in_time_data(features, doc, ref, str(uri), sha256, labels_frame, labels_sha256)
