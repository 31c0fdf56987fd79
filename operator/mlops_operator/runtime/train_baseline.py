"""The stable version a challenger must beat (``mustBeatStable``), scored on the challenger's own test rows.

The operator resolves the ModelDeployment's stable version before it creates the training Job and passes
its verified artifact in ``MLOPS_BASELINE`` (``{"version", "uri", "sha256"}``; sha256 of its model.joblib or
of its manifest). The trainer loads it exactly as the model server does (``ArtifactSource.fetch``: the
manifest, the pin, ``fetch_verified``, then unpickle), scores it with the same metrics on the same test
split, and records ``baseline: {version, uri, rows, metrics}`` in ``metrics.json``.

A stable version that cannot be loaded or scored (tampered, unreadable, another task, input columns these
rows lack, e.g. a FeatureSet pipeline against a raw dataset) is recorded with a ``reason`` instead of
metrics: the gate then fails closed with that reason. Only an unreachable S3 endpoint is an error of the
Job (exit 3, retried): the comparison would be possible a minute later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from mlops_operator.providers.storage import ArtifactStore, StorageError, StorageUnavailable
from mlops_operator.runtime.train_config import BaselineRef, InvalidInput
from mlops_operator.runtime.train_metrics import compute_metrics, select_metrics, task_of

log = logging.getLogger("mlops.train")

MAX_REASON = 900


@dataclass(frozen=True)
class LoadedBaseline:
    """The stable version as loaded before training: its estimator, or why it could not be loaded."""

    ref: BaselineRef
    estimator: Any = None
    reference: Mapping[str, Any] | None = None
    reason: str | None = None


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def load_baseline(store: ArtifactStore, ref: BaselineRef) -> LoadedBaseline:
    """Load the stable version verified against its manifest, before any training is spent.

    Raises ``StorageUnavailable`` (the Job retries); every other failure is a recorded reason."""
    from mlops_operator.runtime.serve_model import ArtifactSource  # the server's loader: same checks, same bytes

    log.info("loading stable version %s from %s to score it on the same test rows...", ref.version, ref.uri)
    try:
        loaded = ArtifactSource(store, ref.uri, ref.sha256).fetch()
    except StorageUnavailable:
        raise
    except (StorageError, ValueError) as exc:
        return LoadedBaseline(ref, reason=_short(f"cannot load stable version {ref.version} from {ref.uri}: "
                                                 f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # unpickling runs foreign code paths: any failure means "cannot score it"
        return LoadedBaseline(ref, reason=_short(f"cannot unpickle stable version {ref.version}: "
                                                 f"{type(exc).__name__}: {exc}"))
    return LoadedBaseline(ref, loaded.estimator, loaded.reference)


def input_columns(estimator: Any, reference: Mapping[str, Any] | None) -> list[str] | None:
    """The columns the stable version reads, by name: what it was fitted on (a FeatureSet pipeline: the raw
    ``inputColumns``), else its drift reference's features (what the server uses); None if neither says."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    features = (reference or {}).get("features")
    return [str(n) for n in features] if isinstance(features, dict) and features else None


def score_baseline(loaded: LoadedBaseline, metric_names: list[str], task: str, X_test: Any,
                   y_test: Any) -> dict[str, Any]:
    """``metrics.json``'s ``baseline``: the stable version's metrics on these rows, or the reason there are none."""
    ref = loaded.ref
    record: dict[str, Any] = {"version": ref.version, "uri": ref.uri, "rows": int(len(X_test))}
    reason = loaded.reason or _unscorable(loaded, task, X_test)
    if reason:
        log.warning("stable version %s is not scored: %s", ref.version, reason)
        return {**record, "reason": reason}
    estimator = loaded.estimator
    columns = input_columns(estimator, loaded.reference)
    assert columns is not None  # _unscorable checked it
    usable, metrics, warnings = [], {}, []
    for name in metric_names:
        try:
            usable += select_metrics([name], task, estimator)
        except InvalidInput as exc:
            metrics[name] = None
            warnings.append(f"metric {name} not computed for the stable version: {exc}")
    try:
        computed, metric_warnings = compute_metrics(usable, estimator, X_test[columns], y_test)
    except Exception as exc:  # the stable model predicting on these rows failed: dtypes, categories, ...
        return {**record, "reason": _short(f"stable version {ref.version} failed on these test rows: "
                                           f"{type(exc).__name__}: {exc}")}
    metrics = {name: {**metrics, **computed}.get(name) for name in metric_names}
    log.info("stable version %s on the same %d test rows: %s", ref.version, len(X_test), metrics)
    return {**record, "metrics": metrics, "warnings": warnings + metric_warnings}


def _unscorable(loaded: LoadedBaseline, task: str, X_test: Any) -> str | None:
    """Why the stable version cannot be scored on these rows (None: it can)."""
    version = loaded.ref.version
    try:
        its_task = task_of(loaded.estimator)
    except InvalidInput as exc:
        return f"stable version {version}: {exc}"
    if its_task != task:
        return f"stable version {version} is a {its_task} model and this version a {task} model"
    columns = input_columns(loaded.estimator, loaded.reference)
    if columns is None:
        return (f"stable version {version} records no input column names (neither feature_names_in_ nor a drift "
                "reference): cannot tell that these test rows are its inputs")
    missing = [c for c in columns if c not in X_test.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return (f"stable version {version} reads input column(s) {shown} that this version's test rows lack "
                "(e.g. one trained on a FeatureSet, the other on a raw dataset)")
    return None
