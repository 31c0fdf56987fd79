"""A constructed leak trap for point-in-time training, shared by the unit and e2e tiers.

Every entity has one label at its own time ``t``. Its feature ``signal`` is recorded twice: shortly before
``t`` and shortly after it. In the ``trap`` form the value recorded AFTER the label equals the label (a model
trained with that leakage scores ~1.0) and the value known at ``t`` is noise; in the ``honest`` form it is the
other way round. ``noise`` is noise in both. A point-in-time join must score near chance on the trap and
near 1.0 on the honest data; a naive join of each entity's latest value does the opposite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

ENTITY, FEATURE_TIME, LABEL_TIME, LABEL = "customer_id", "event_time", "label_time", "churned"
FEATURES = ("signal", "noise")
START = datetime(2026, 3, 1, tzinfo=UTC)
GAP = timedelta(minutes=30)  # how far before/after its label each feature value is recorded


def leak_trap(entities: int = 400, seed: int = 7, honest: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature rows, label rows). Feature times are ISO 8601 in UTC; label times carry a +02:00 offset
    (the same instants), so the join has to compare instants, not wall-clock text."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(entities) % 2)
    ids = [f"c{i}" for i in range(entities)]
    times = [START + timedelta(hours=i) for i in range(entities)]
    known, later = rng.normal(size=entities), labels.astype(float)
    if honest:
        known, later = labels.astype(float), rng.normal(size=entities)
    rows = []
    for i, (entity, t) in enumerate(zip(ids, times)):
        rows.append({ENTITY: entity, FEATURE_TIME: (t - GAP).isoformat(), "signal": known[i],
                     "noise": rng.normal()})
        rows.append({ENTITY: entity, FEATURE_TIME: (t + GAP).isoformat(), "signal": later[i],
                     "noise": rng.normal()})
    plus_two = [t.astimezone(timezone(timedelta(hours=2))).isoformat() for t in times]
    return pd.DataFrame(rows), pd.DataFrame({ENTITY: ids, LABEL_TIME: plus_two, LABEL: labels})


def naive_latest_join(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """What a join without time does: each label gets its entity's LATEST feature values (leakage)."""
    latest = (features.assign(_t=pd.to_datetime(features[FEATURE_TIME], utc=True))
              .sort_values("_t").groupby(ENTITY, as_index=False).last().drop(columns="_t"))
    return labels.merge(latest, on=ENTITY, how="inner")


def accuracy_of(frame: pd.DataFrame, seed: int = 42, test_fraction: float = 0.25) -> float:
    """Test accuracy of a logistic regression on ``FEATURES`` -> ``LABEL`` (the trainer's split settings)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = frame[list(FEATURES)].astype(float), frame[LABEL]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_fraction, random_state=seed,
                                                        stratify=y)
    return float(LogisticRegression().fit(X_train, y_train).score(X_test, y_test))
