"""Training for real: the operator's Job runs ``mlops-train`` from the runtime image on the local node.

Needs the node and ``localhost/mlops-runtime:dev`` imported into containerd (``make cluster-up`` with
the node, ``make images``). A ModelVersion goes Pending -> Training -> Validating -> Ready with a verified
artifact, metrics and lineage; bad input the schema cannot see fails fast as ``InvalidTrainingInput``.
"""

from __future__ import annotations

import pytest

from test_operator_modelversion import secret  # noqa: F401  (shared fixture)
from test_operator_references import (  # noqa: F401  (shared fixtures)
    apply,
    condition,
    crds,
    event_reasons,
    jobs_of,
    model_version,
    operator,
    start_operator,
    wait_condition,
)
from test_storage_minio import empty_prefix

pytestmark = pytest.mark.integration

TRAINING = {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
            "hyperparameters": {"max_iter": 2000}, "metrics": ["accuracy", "roc_auc"], "timeout": "10m"}


@pytest.fixture(autouse=True)
def _node(node_enabled) -> None:
    assert node_enabled, "these tests run training pods: start the cluster with its node (MLOPS_NODE_ENABLED=1)"


@pytest.fixture()
def clean_prefix(store, secret):  # noqa: F811
    prefixes: list[str] = []
    yield prefixes.append
    for prefix in prefixes:
        empty_prefix(store, prefix)


def test_given_version_when_trained_on_the_node_then_ready_with_verified_artifact_and_lineage(
        operator, namespace, secret, clean_prefix):  # noqa: F811
    name = f"bc-{namespace[-5:]}"
    clean_prefix(f"s3://{secret['S3_BUCKET']}/models/{namespace}/breast-cancer/{name}/")
    apply(namespace, model_version(name, training=TRAINING, gates={"minMetrics": {"accuracy": 0.9}}))
    mv = wait_condition(namespace, "modelversion", name, "Ready", "True", "GatesPassed", timeout=420)
    status = mv["status"]
    assert status["phase"] == "Ready"
    assert status["artifact"]["uri"] == f"s3://{secret['S3_BUCKET']}/models/{namespace}/breast-cancer/{name}/"
    assert len(status["artifact"]["sha256"]) == 64 and status["artifact"]["format"] == "mlflow-sklearn"
    assert status["metrics"]["accuracy"] >= 0.9 and "roc_auc" in status["metrics"]
    assert status["primaryMetric"]["name"] == "accuracy"
    lineage = status["lineage"]
    assert lineage["job"] == f"mv-{name}-train" and lineage["image"].endswith("mlops-runtime:dev")
    assert len(lineage["datasetSha256"]) == 64 and lineage["startedAt"] and lineage["finishedAt"]
    assert status["parameters"]["max_iter"] == 2000
    assert len(jobs_of(namespace, name)) == 1
    assert {("Normal", "TrainingStarted"), ("Normal", "TrainingSucceeded"), ("Normal", "Ready")} <= \
        event_reasons(namespace, name)


def test_given_unknown_hyperparameter_when_trained_then_failed_fast_with_the_trainers_message(
        operator, namespace, secret):  # noqa: F811
    bad = {**TRAINING, "hyperparameters": {"n_estimatorz": 3}}
    apply(namespace, model_version("bc-bad", training=bad))
    mv = wait_condition(namespace, "modelversion", "bc-bad", "Ready", "False", "InvalidTrainingInput", timeout=300)
    assert mv["status"]["phase"] == "Failed"
    assert "n_estimatorz" in condition(mv, "Ready")["message"]
    (job,) = jobs_of(namespace, "bc-bad")
    assert job["status"].get("failed") == 1  # exit code 2 is never retried
    assert ("Warning", "TrainingFailed") in event_reasons(namespace, "bc-bad")
