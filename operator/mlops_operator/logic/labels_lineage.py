"""What a ModelVersion's ``status.lineage.labels`` says about point-in-time labels. Pure.

Before training, the spec tells the source and the bound; after it, the trainer's report (``metrics.json``
``data.labels``) adds the as-of rule it applied and the join's counts.
"""

from __future__ import annotations

from typing import Any, Mapping

MAX_DROP_CAUSES = 8


def labels_lineage(spec_labels: Any, report: Any = None) -> dict[str, Any] | None:
    """``{source, maxAge?, asOf?, labels?, joined?, dropped?}``, or None without point-in-time labels.

    >>> class L: source = type("S", (), {"uri": "s3://b/labels.csv"}); max_age = "1h"
    >>> labels_lineage(L(), {"asOf": "t <= label time", "labels": 3, "joined": 2, "dropped": {"tooOld": 1}})
    {'source': 's3://b/labels.csv', 'maxAge': '1h', 'asOf': 't <= label time', 'labels': 3, 'joined': 2, 'dropped': {'tooOld': 1}}
    """
    if spec_labels is None:
        return None
    doc: dict[str, Any] = {"source": spec_labels.source.uri, "maxAge": spec_labels.max_age}
    if isinstance(report, Mapping):
        doc["asOf"] = str(report["asOf"])[:256] if isinstance(report.get("asOf"), str) else None
        for key in ("labels", "joined"):
            value = report.get(key)
            doc[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
        dropped = report.get("dropped")
        if isinstance(dropped, Mapping):
            doc["dropped"] = {str(k): v for k, v in list(dropped.items())[:MAX_DROP_CAUSES]
                              if isinstance(v, int) and not isinstance(v, bool)}
    return {k: v for k, v in doc.items() if v is not None}
