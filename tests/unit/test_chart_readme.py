"""The chart README (charts/mlops-operator/README.md) lists every value of values.yaml with its real default
and a meaning. A unit test (files only, no helm), so adding a value without documenting it fails before merge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[2] / "charts" / "mlops-operator"
# Maps whose keys are the user's (labels, selectors, resource quantities): one README row each, not one per key.
FREE_MAPS = {"podAnnotations", "podLabels", "nodeSelector", "affinity", "serviceAccount.annotations",
             "monitoring.serviceMonitor.labels", "monitoring.prometheusRule.labels", "monitoring.rulesConfigMap.labels",
             "monitoring.podMonitor.labels", "monitoring.dashboards.labels", "monitoring.dashboards.annotations",
             "networkPolicy.monitoringNamespaceSelector", "networkPolicy.monitoringPodSelector",
             "resources.requests", "resources.limits", "batteries.minio.resources", "batteries.prometheus.resources",
             "batteries.prometheus.discoveryResources", "batteries.alertmanager.resources"}
ROW = re.compile(r"^\| `(?P<path>[A-Za-z0-9_.]+)` \| `(?P<default>[^`]*)` \| (?P<meaning>.+) \|$")


def value_leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, child in values.items():
        path = prefix + key
        if isinstance(child, dict) and child and path not in FREE_MAPS:
            leaves |= value_leaves(child, path + ".")
        else:
            leaves[path] = child
    return leaves


def readme_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (CHART / "README.md").read_text().splitlines():
        if (m := ROW.match(line)) is not None:
            rows[m["path"]] = (m["default"], m["meaning"].strip())
    return rows


def test_given_values_yaml_when_the_readme_is_read_then_every_value_has_a_row_with_its_default_and_a_meaning():
    values = value_leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    rows = readme_rows()
    missing = sorted(set(values) - set(rows))
    assert not missing, f"charts/mlops-operator/README.md lacks rows for: {missing}"
    stale = sorted(set(rows) - set(values))
    assert not stale, f"README rows for values that no longer exist: {stale}"
    wrong = {path: (rows[path][0], value) for path, value in values.items()
             if yaml.safe_load(rows[path][0] or "''") != value}
    assert not wrong, f"README defaults differ from values.yaml (README, values.yaml): {wrong}"
    assert all(len(meaning) > 10 for _, meaning in rows.values())


