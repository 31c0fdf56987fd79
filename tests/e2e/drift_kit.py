"""What the closed-loop e2e tests and the demo's loop step share: a FeatureSet of the breast cancer data, a
RetrainPolicy that retrains on it when a drift alert fires, the time-compressed copy of the shipped drift rule,
and drifted traffic.

The local cluster's Prometheus scrapes and evaluates every 5 s; the shipped MLOpsFeatureDriftHigh rule waits
5 minutes. The copy installed here fires at once (``for: 0s``), is scoped to one namespace and version, and
carries one extra label (``marker``) so that only the policy made for this run matches the alert. Like the
shipped rule it keeps the pods' ``namespace`` label, which the operator's alert webhook requires: an alert
acts only on the policies of that namespace.
"""

from __future__ import annotations

import httpx
import numpy as np

from tests.e2e import prometheus_kit
from tests.e2e import rollout_kit as kit

ALERT = "MLOpsFeatureDriftHigh"


def featureset(name: str) -> dict:
    """Every column of the breast cancer data as a float feature: the served model takes the same raw rows."""
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": name},
            "spec": {"source": {"builtin": "breast_cancer"}, "target": "target"}}


def training(featureset_name: str, trees: int, depth: int | None = None) -> dict:
    """A random forest trained on the FeatureSet's latest snapshot (few shallow trees: a weak model)."""
    hyper = {"n_estimators": trees, "random_state": 2, **({"max_depth": depth} if depth else {})}
    return {"featureSet": {"name": featureset_name}, "estimator": "sklearn.ensemble.RandomForestClassifier",
            "hyperparameters": hyper, "split": {"testFraction": 0.3, "seed": 7, "stratify": True},
            "metrics": ["accuracy", "roc_auc"]}


def policy(name: str, alert_labels: dict[str, str], channel: dict[str, str], training_spec: dict,
           deployment: str) -> dict:
    """Retrain on ``alert_labels``' drift alert; the new version joins ``channel`` and must beat the version
    ``deployment`` serves on roc_auc, both scored on the new version's own test rows."""
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": name},
            "spec": {"model": kit.MODEL, "cooldown": "10m", "maxConcurrent": 1,
                     "triggers": {"alerts": [{"matchLabels": {"alertname": ALERT, **alert_labels}}]},
                     "template": {"labels": channel, "training": training_spec, "gates": {
                         "minMetrics": {"accuracy": 0.5},
                         "mustBeatStable": {"modelDeployment": deployment, "metric": "roc_auc", "margin": 0.0}}}}}


def drift_rule(group: str, namespace: str, version: str, marker: dict[str, str]) -> str:
    """The shipped drift rule for one served version, firing at once, with ``marker`` among its labels."""
    labels = ", ".join(f'{k}: "{v}"' for k, v in {"severity": "warning", **marker}.items())
    return f"""groups:
- name: {group}
  rules:
  - alert: {ALERT}
    expr: max by (namespace, model, version, feature) (mlops_feature_drift{{test="psi", namespace="{namespace}", version="{version}"}}) > 0.25
    for: 0s
    labels: {{{labels}}}
    annotations: {{summary: "feature drift (a copy of the shipped rule with for: 0s)"}}
"""


class DriftRule(prometheus_kit.Rules):
    """``with DriftRule(...)``: the rule file is in Prometheus' rules directory (and loaded) inside the block."""

    def __init__(self, rules_dir: str, prometheus_url: str, group: str, namespace: str, version: str,
                 marker: dict[str, str]):
        super().__init__(rules_dir, prometheus_url, group, drift_rule(group, namespace, version, marker))


def send_drifted(base: str, requests: int = 10) -> None:
    """Traffic from another population: every feature scaled up x3, well outside the training profile."""
    drifted = (np.array(kit.ROWS) * 3.0).tolist()
    body = {"inputs": [{"name": "input-0", "shape": [len(drifted), len(drifted[0])], "datatype": "FP64",
                        "data": drifted}]}
    for _ in range(requests):
        answer = httpx.post(f"{base}/v2/models/{kit.MODEL}/infer", timeout=10, json=body)
        assert answer.status_code == 200, answer.text
