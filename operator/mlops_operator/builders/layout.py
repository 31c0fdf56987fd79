"""Where things live in the bucket (pure): every path carries the namespace, so equal names in two namespaces
never share a prefix, and an object only ever finds what was written at its own prefix.

::

    models/<namespace>/<model>/<modelversion>/{manifest.json, <attempt>/{model.joblib, MLmodel, ...}}
    features/<namespace>/<featureset>/<version>/{manifest.json, <attempt>/{data.parquet, ...}}
    predictions/<namespace>/<batchprediction>/<run>/{manifest.json, <attempt>/{part-00000.parquet, ..., run.json}}
"""

from __future__ import annotations


def _segment(part: str, what: str) -> str:
    if not part or "/" in part or part in (".", "..") or "\\" in part:
        raise ValueError(f"invalid {what} {part!r}")
    return part


def model_version_prefix(bucket: str, namespace: str, model: str, model_version: str) -> str:
    """``s3://<bucket>/models/<namespace>/<model>/<modelversion>/``.

    >>> model_version_prefix("mlops", "team-a", "breast-cancer", "bc-v1")
    's3://mlops/models/team-a/breast-cancer/bc-v1/'
    """
    return (f"s3://{bucket}/models/{_segment(namespace, 'namespace')}/{_segment(model, 'model name')}/"
            f"{_segment(model_version, 'version name')}/")


def snapshot_prefix(bucket: str, namespace: str, feature_set: str, version: str) -> str:
    """``s3://<bucket>/features/<namespace>/<featureset>/<version>/``.

    >>> snapshot_prefix("mlops", "team-a", "bc-features", "v3")
    's3://mlops/features/team-a/bc-features/v3/'
    """
    return (f"s3://{bucket}/features/{_segment(namespace, 'namespace')}/{_segment(feature_set, 'FeatureSet name')}/"
            f"{_segment(version, 'snapshot version')}/")


def predictions_prefix(bucket: str, namespace: str, batch_prediction: str, run: str) -> str:
    """``s3://<bucket>/predictions/<namespace>/<batchprediction>/<run>/``.

    >>> predictions_prefix("mlops", "team-a", "nightly", "t-20260101-0200")
    's3://mlops/predictions/team-a/nightly/t-20260101-0200/'
    """
    return (f"s3://{bucket}/predictions/{_segment(namespace, 'namespace')}/"
            f"{_segment(batch_prediction, 'BatchPrediction name')}/{_segment(run, 'run id')}/")
