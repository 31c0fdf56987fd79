"""The shipped alert rules: one source for every install path, valid for Prometheus, firing exactly past their
thresholds and `for` windows (proven with `promtool test rules` on synthetic series), one alert per namespace."""

from __future__ import annotations

import pathlib
import re
import shutil
from typing import Any

import pytest
import yaml
from test_chart import CHART, PROMETHEUS_OPERATOR_API, REPO_ROOT, non_dashboard, one, render, run

pytestmark = pytest.mark.chart

RULES = REPO_ROOT / "manifests" / "monitoring" / "rules.yaml"
CHART_COPY = CHART / "files" / "rules.yaml"
DESIGN_ALERTS = {"MLOpsFeatureDriftHigh", "MLOpsPredictionDriftHigh", "MLOpsAccuracyLow", "MLOpsMissingFeaturesHigh"}
OPERATOR_ALERTS = {"MLOpsRolloutRolledBack", "MLOpsRolloutStuck", "MLOpsRolloutDegraded", "MLOpsOperatorReconcileErrors",
                   "MLOpsOperatorNoLeader"}
MODEL_QUALITY_GROUP = "mlops-operator.model-quality"


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not pathlib.Path(path).is_file():
        pytest.fail("promtool not found: install the Debian prometheus package (tests/infra/install-deps.sh)")
    return path


def alert_rules(text: str) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]}


def test_given_the_chart_copy_when_compared_then_it_is_byte_identical_to_the_shipped_rules():
    assert CHART_COPY.read_bytes() == RULES.read_bytes(), (
        "charts/mlops-operator/files/rules.yaml is stale: cp manifests/monitoring/rules.yaml charts/mlops-operator/files/")


def test_given_the_prometheus_operator_when_rendered_then_the_prometheus_rule_holds_exactly_the_shipped_rules():
    rule = one(render(api_versions=[PROMETHEUS_OPERATOR_API]), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_given_no_prometheus_operator_when_rendered_then_the_configmap_holds_the_shipped_rules_file_verbatim():
    (config_map,) = non_dashboard(render(), "ConfigMap")
    assert config_map["data"] == {"mlops-operator-rules.yaml": RULES.read_text()}


def test_given_the_rules_file_when_checked_by_promtool_then_it_is_valid():
    result = run(promtool(), "check", "rules", str(RULES))
    assert "SUCCESS: 9 rules found" in result.stdout


def test_given_the_rules_when_listed_then_they_are_the_designs_alerts_with_severity_and_docs():
    rules = alert_rules(RULES.read_text())
    assert set(rules) == DESIGN_ALERTS | OPERATOR_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_given_each_rule_when_its_annotations_are_read_then_they_only_use_labels_the_expression_keeps():
    """A typo such as $labels.modle renders empty text at 3 a.m.; the `by (...)` clause is the label set."""
    groups = {rule["alert"]: group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"]}
    for name, rule in alert_rules(RULES.read_text()).items():
        clauses = re.findall(r"by \(([^)]*)\)", rule["expr"])
        kept = {label.strip() for label in clauses[0].split(",")}
        assert all({label.strip() for label in c.split(",")} == kept for c in clauses), f"{name}: both sides keep one set"
        if groups[name] == MODEL_QUALITY_GROUP:
            assert "model" in kept, f"{name}: RetrainPolicy triggers match on the model label"
        assert "namespace" in kept, f"{name}: the /alerts webhook acts only in the namespace the alert names"
        used = set(re.findall(r"\$labels\.(\w+)", yaml.safe_dump(rule["annotations"])))
        assert used <= kept, f"{name} uses {used - kept}"


def _series(metric: str, value: str, **labels: str) -> dict[str, str]:
    base = {"namespace": "team-a", "model": "bc", "version": "bc-v1", "role": "stable", **labels}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in base.items()) + "}", "values": value}


def _mdep(metric: str, values: str, **labels: str) -> dict[str, str]:
    base = {"namespace": "team-a", "name": "bc", **labels}
    series = f"mlops_operator_modeldeployment_{metric}" + "{" + ",".join(f'{k}="{v}"' for k, v in base.items()) + "}"
    return {"series": series, "values": values}


def _plain(series: str, values: str) -> dict[str, str]:
    return {"series": series, "values": values}


def _alert(name: str, at: str, *expected: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": labels} for labels in expected]}


def test_given_synthetic_series_when_promtool_evaluates_then_alerts_fire_exactly_past_threshold_and_window(tmp_path):
    # Annotations are covered above; stripping them keeps this test about thresholds, windows and labels.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    flat = "x20"  # 21 samples, one a minute
    drift, pred, acc, missing = ("MLOpsFeatureDriftHigh", "MLOpsPredictionDriftHigh", "MLOpsAccuracyLow",
                                 "MLOpsMissingFeaturesHigh")
    warn = {"severity": "warning", "namespace": "team-a", "model": "bc", "version": "bc-v1"}
    mdep = {"namespace": "team-a", "name": "bc"}
    test = {
        "interval": "1m",
        "input_series": [
            # PSI 0.3 on two roles of the same version: one alert per (namespace, model, version, feature).
            _series("mlops_feature_drift", "0.3" + flat, feature="f1", test="psi"),
            _series("mlops_feature_drift", "0.31" + flat, feature="f1", test="psi", role="canary"),
            # The same model and version names in another team's namespace: an alert of its own.
            _series("mlops_feature_drift", "0.4" + flat, feature="f1", test="psi", namespace="team-b"),
            _series("mlops_feature_drift", "0.25" + flat, feature="f2", test="psi"),  # at the threshold: quiet
            _series("mlops_feature_drift", "0.9" + flat, feature="f3", test="ks"),    # not PSI: quiet
            _series("mlops_prediction_drift", "0.4" + flat, test="psi"),
            _series("mlops_prediction_drift", "0.9" + flat, test="ks", model="other"),
            _series("mlops_model_accuracy", "0.8" + flat),
            _series("mlops_model_accuracy", "0.95" + flat, model="good"),
            _series("mlops_feature_missing_ratio", "0.5" + flat, feature="f1"),
            _series("mlops_feature_missing_ratio", "0.3" + flat, feature="f2"),
            # Rollouts: team-a/bc rolls back at minute 3 (phase RolledBack for two minutes, then a new rollout);
            # team-b/bc (same name) sits Progressing at 10 % from the start; team-a/other is Degraded from 2m.
            _mdep("phase", "0 0 0 1 1 0" + " 0" * 40, phase="RolledBack"),
            _mdep("rollbacks", "0 0 0 1 1 1" + " 1" * 40),
            _mdep("phase", "1" + " 1" * 45, phase="Progressing", namespace="team-b"),
            _mdep("weight", "10" + " 10" * 45, role="candidate", namespace="team-b"),
            _mdep("phase", "0 0 1" + " 1" * 43, phase="Degraded", name="other"),
            _plain('mlops_operator_reconciles_total{namespace="mlops-system",kind="ModelVersion",result="failed"}',
                   "0+1x45"),
            _plain('mlops_operator_reconciles_total{namespace="mlops-system",kind="FeatureSet",result="failed"}',
                   "0x45"),
            _plain('mlops_operator_leader{namespace="mlops-system",pod="a"}', "1 1 1 0 0 0 0 0 0 0" + " 0" * 36),
            _plain('mlops_operator_leader{namespace="mlops-system",pod="b"}', "0" + " 0" * 45),
        ],
        "alert_rule_test": [
            _alert(drift, "4m"),
            _alert(drift, "6m", {**warn, "feature": "f1"}, {**warn, "feature": "f1", "namespace": "team-b"}),
            _alert(pred, "4m"),
            _alert(pred, "6m", warn),
            _alert(acc, "9m"),
            _alert(acc, "11m", {**warn, "severity": "critical"}),
            _alert(missing, "4m"),
            _alert(missing, "6m", {**warn, "feature": "f1"}),
            _alert("MLOpsRolloutRolledBack", "2m"),
            _alert("MLOpsRolloutRolledBack", "4m", {**mdep, "severity": "warning"}),
            _alert("MLOpsRolloutRolledBack", "8m", {**mdep, "severity": "warning"}),   # RolledBack gone, delta not
            _alert("MLOpsRolloutRolledBack", "16m"),
            _alert("MLOpsRolloutStuck", "29m"),                     # unchanged weight, Progressing: 30m `for`
            _alert("MLOpsRolloutStuck", "31m", {**mdep, "namespace": "team-b", "severity": "warning"}),
            _alert("MLOpsRolloutDegraded", "6m"),
            _alert("MLOpsRolloutDegraded", "8m", {**mdep, "name": "other", "severity": "critical"}),
            _alert("MLOpsOperatorReconcileErrors", "8m"),
            _alert("MLOpsOperatorReconcileErrors", "16m",
                   {"namespace": "mlops-system", "kind": "ModelVersion", "severity": "warning"}),
            _alert("MLOpsOperatorNoLeader", "4m"),
            _alert("MLOpsOperatorNoLeader", "6m", {"namespace": "mlops-system", "severity": "critical"}),
        ],
    }
    spec = {"rule_files": [str(tmp_path / "rules.yaml")], "evaluation_interval": "1m", "tests": [test]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec))
    result = run(promtool(), "test", "rules", str(tmp_path / "test.yaml"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
