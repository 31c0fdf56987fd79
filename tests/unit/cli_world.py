"""A namespace as the apiserver would return it, for the `kubectl mlops` unit tests: a FeatureSet, three
versions of breast-cancer (Production, Staging, and one whose training Job failed), a canary in progress,
a RetrainPolicy and a HyperparameterSearch. Plain dicts only."""

from __future__ import annotations

import copy

from mlops_operator.cli.world import World

NS = "team-a"


def meta(name: str, created: str, **labels: str) -> dict:
    return {"name": name, "namespace": NS, "creationTimestamp": created, "uid": f"uid-{name}", "labels": labels}


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


FS = {"kind": "FeatureSet", "metadata": meta("bc-features", "2026-01-01T00:00:00Z"),
      "spec": {"source": {"builtin": "breast_cancer"}},
      "status": {"phase": "Ready", "latestVersion": "v2",
                 "versions": [{"version": "v1", "uri": "s3://b/f/v1/", "rows": 500, "sha256": "aaa", "qualityPassed": True},
                              {"version": "v2", "uri": "s3://b/f/v2/", "rows": 569, "sha256": "bbb", "qualityPassed": True}],
                 "quality": {"passed": True}, "conditions": [cond("Ready", "True", "Materialized")]}}


def mv(name: str, created: str, phase: str, *, stage: str | None = None, metrics: dict | None = None,
       fs_version: str | None = None, params: dict | None = None, ready: tuple[str, str] | None = None) -> dict:
    status: dict = {"phase": phase,
                    "conditions": [cond("Ready", "True" if phase == "Ready" else "False", *(ready or (phase, "")))],
                    "lineage": {"job": f"mv-{name}-train", "image": "localhost/mlops-runtime:dev"}}
    if stage:
        status["stage"] = stage
    if metrics:
        status["metrics"] = metrics
        status["primaryMetric"] = {"name": "accuracy", "value": metrics["accuracy"]}
    if fs_version:
        status["lineage"].update(featureSet="bc-features", featureSetVersion=fs_version)
    if params:
        status["parameters"] = params
    return {"kind": "ModelVersion", "metadata": meta(name, created),
            "spec": {"model": "breast-cancer", "training": {"featureSet": {"name": "bc-features"},
                                                            "estimator": "sklearn.linear_model.LogisticRegression"}},
            "status": status}


V1 = mv("bc-v1", "2026-01-01T01:00:00Z", "Ready", stage="Production", metrics={"accuracy": 0.95, "f1_macro": 0.94},
        fs_version="v1", params={"C": 1.0, "max_iter": 100})
V2 = mv("bc-v2", "2026-01-01T02:00:00Z", "Ready", stage="Staging", metrics={"accuracy": 0.97, "f1_macro": 0.96},
        fs_version="v2", params={"C": 0.5, "max_iter": 100})
V3 = mv("bc-v3", "2026-01-01T03:00:00Z", "Failed", ready=("BackoffLimitExceeded", "Job has reached the specified backoff limit"))

MDEP = {"kind": "ModelDeployment", "metadata": meta("bc", "2026-01-01T01:30:00Z"),
        "spec": {"model": "breast-cancer", "track": {"policy": "latestReady"},
                 "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 20}, {"weight": 50}]}}},
        "status": {"phase": "Progressing", "stableVersion": "bc-v1", "candidateVersion": "bc-v2", "canaryWeight": 20,
                   "currentStep": 0, "desiredVersion": "bc-v2",
                   "analysis": [{"at": "2026-01-01T02:10:00Z", "metric": "error-rate", "value": 0.0, "passed": True, "samples": 120},
                                {"at": "2026-01-01T02:10:00Z", "metric": "latency", "value": 0.31, "passed": False,
                                 "samples": 120, "message": "0.31 > max 0.25"}],
                   "history": [{"version": "bc-v1", "event": "promoted", "at": "2026-01-01T01:40:00Z",
                                "reason": "first version"}],
                   "conditions": [cond("Ready", "True", "Serving"), cond("Progressing", "True", "CanaryStep")]}}

RP = {"kind": "RetrainPolicy", "metadata": meta("bc-retrain", "2026-01-01T00:30:00Z"),
      "spec": {"model": "breast-cancer", "template": {"training": {"featureSet": {"name": "bc-features"},
                                                                   "estimator": "sklearn.linear_model.LogisticRegression"}},
               "triggers": {"schedule": "0 3 * * 0"}},
      "status": {"phase": "Idle", "retrains": 1,
                 "lastTriggered": {"source": "schedule", "at": "2026-01-01T03:00:00Z", "modelVersion": "bc-v3"},
                 "history": [{"source": "schedule", "at": "2026-01-01T03:00:00Z", "modelVersion": "bc-v3", "outcome": "Created"}],
                 "conditions": [cond("Ready", "True", "Idle")]}}

HPS = {"kind": "HyperparameterSearch", "metadata": meta("bc-search", "2026-01-01T00:40:00Z"),
       "spec": {"model": "breast-cancer", "maxTrials": 4},
       "status": {"phase": "Succeeded", "completedTrials": 4, "best": {"trial": "bc-search-t2", "value": 0.98},
                  "registeredVersion": "bc-search-best", "conditions": [cond("Ready", "True", "Succeeded")]}}

JOB_LABELS = {"mlops.dev/model": "breast-cancer", "mlops.dev/modelversion": "bc-v3",
              "app.kubernetes.io/managed-by": "mlops-operator", "app.kubernetes.io/component": "training"}
JOB = {"metadata": {**meta("mv-bc-v3-train", "2026-01-01T03:00:01Z", **JOB_LABELS)},
       "status": {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                               "message": "Job has reached the specified backoff limit"}]}}
POD = {"metadata": {**meta("mv-bc-v3-train-abcde", "2026-01-01T03:00:05Z", **JOB_LABELS,
                           **{"batch.kubernetes.io/job-name": "mv-bc-v3-train"})},
       "spec": {"containers": [{"name": "train"}]},
       "status": {"containerStatuses": [{"name": "train", "state": {"terminated": {
           "exitCode": 2, "reason": "Error", "message": "reading data\ncolumn 'target' not found in the dataset"}}}]}}


def world() -> World:
    return World(featuresets=[copy.deepcopy(FS)], modelversions=[copy.deepcopy(x) for x in (V3, V1, V2)],
                 modeldeployments=[copy.deepcopy(MDEP)], retrainpolicies=[copy.deepcopy(RP)],
                 hyperparametersearches=[copy.deepcopy(HPS)], jobs=[copy.deepcopy(JOB)], pods=[copy.deepcopy(POD)])
