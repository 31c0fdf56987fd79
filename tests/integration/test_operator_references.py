"""The operator in-process (KopfRunner) against the real apiserver: dangling references are reported as
``InvalidSpec`` with an event, nothing starts, and the condition clears by itself when the object appears.

Also the shared fixtures of the operator tests: CRDs applied from ``crds/``, an operator watching only the
test's namespace (short tick, no HTTP ports), and a clean-up that deletes our objects while the operator
still runs, so their finalizers are released and the namespace can go.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from kopf.testing import KopfRunner

from mlops_operator.operator_settings import operator_settings
from tests.conftest import REPO_ROOT, condition, kubectl, poll_until

pytestmark = pytest.mark.integration

KINDS = ("featuresets", "modelversions", "modeldeployments", "retrainpolicies", "hyperparametersearches")
OPERATOR_ENV = {"MLOPS_RECONCILE_INTERVAL": "2", "MLOPS_HTTP_PORT": "0", "MLOPS_HEALTH_PORT": "0",
                "MLOPS_RETRY_BASE_DELAY": "1", "MLOPS_RETRY_MAX_DELAY": "8"}


# ------------------------------------------------------------------------------------------ helpers


def apply(namespace: str, *objects: dict[str, Any]) -> None:
    # JSON documents (valid YAML): PyYAML leaves a string like 08310423 unquoted and kubectl reads it as a number.
    kubectl("-n", namespace, "apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))


def get(namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the last value seen."""
    return poll_until(what, probe, timeout, interval)


def reconciles(kind: str) -> float:
    """Every reconcile pass of ``kind`` this process ran (in-process operators), whatever its result: waiting for
    more passes replaces sleeping for "a few ticks"."""
    return sum(sample.value for metric in REGISTRY.collect() for sample in metric.samples
               if sample.name == "mlops_operator_reconciles_total" and sample.labels.get("kind") == kind)


def wait_condition(namespace: str, kind: str, name: str, type_: str, status: str, reason: str | None = None,
                   timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(namespace, kind, name)
        cond = condition(obj, type_)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return obj if ok else None
    return wait_for(f"{kind}/{name} {type_}={status} {reason or ''}", probe, timeout)


def event_reasons(namespace: str, name: str) -> set[tuple[str, str]]:
    proc = kubectl("-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return {(e.get("type"), e.get("reason")) for e in json.loads(proc.stdout)["items"]}


def jobs_of(namespace: str, model_version: str) -> list[dict[str, Any]]:
    proc = kubectl("-n", namespace, "get", "jobs", "-l", f"mlops.dev/modelversion={model_version}", "-o", "json")
    return json.loads(proc.stdout)["items"]


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def crds(kube_env) -> None:
    """Our CRDs, applied from the generated files (server-side: idempotent across runs)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *[f"crd/{plural}.mlops.dev" for plural in KINDS])


@pytest.fixture()
def start_operator(crds, namespace, monkeypatch) -> Iterator[Callable[[], contextlib.AbstractContextManager]]:
    """A factory of operator runs scoped to the test namespace; objects are cleaned up at the end."""
    for key, value in OPERATOR_ENV.items():
        monkeypatch.setenv(key, value)
    operator_settings.cache_clear()

    @contextlib.contextmanager
    def run() -> Iterator[KopfRunner]:
        args = ["run", "-m", "mlops_operator.main", "--namespace", namespace, "--standalone"]
        with KopfRunner(args, timeout=60) as runner:
            yield runner

    yield run
    with run():  # release our finalizers so the namespace can be deleted
        kubectl("-n", namespace, "delete", ",".join(KINDS), "--all", "--wait=true", "--timeout=90s", check=False)
    operator_settings.cache_clear()


@pytest.fixture()
def operator(start_operator) -> Iterator[KopfRunner]:
    with start_operator() as runner:
        yield runner


# ------------------------------------------------------------------------------------------- objects


def model_version(name: str, **spec: Any) -> dict[str, Any]:
    spec = spec or {"training": {"dataset": {"builtin": "breast_cancer"},
                                 "estimator": "sklearn.linear_model.LogisticRegression"}}
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "breast-cancer", **spec}}


def model_deployment(name: str, version: str) -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": "breast-cancer", "version": version}}


def feature_set(name: str) -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet", "metadata": {"name": name},
            "spec": {"source": {"builtin": "breast_cancer"}, "entityKey": "id",
                     "features": [{"name": "mean radius", "dtype": "float"}]}}


# --------------------------------------------------------------------------------------------- tests


def test_given_deployment_of_missing_version_when_reconciled_then_invalid_spec_until_version_appears(
        operator, namespace):
    apply(namespace, model_deployment("bc", "bc-v1"))
    md = wait_condition(namespace, "modeldeployment", "bc", "InvalidSpec", "True", "ModelVersionNotFound")
    assert "spec.version" in condition(md, "InvalidSpec")["message"]
    wait_for("a Warning event", lambda: ("Warning", "ModelVersionNotFound") in event_reasons(namespace, "bc"))

    apply(namespace, model_version("bc-v1", artifact={"uri": "s3://mlops/models/breast-cancer/bc-v1/",
                                                      "sha256": "0" * 64}))
    wait_condition(namespace, "modeldeployment", "bc", "InvalidSpec", "False", "Valid")
    wait_for("a ReferencesResolved event", lambda: ("Normal", "ReferencesResolved") in event_reasons(namespace, "bc"))


def test_given_deployment_of_another_models_version_when_reconciled_then_model_mismatch(operator, namespace):
    other = model_version("iris-v1", artifact={"uri": "s3://mlops/models/iris/iris-v1/", "sha256": "0" * 64})
    other["spec"]["model"] = "iris"
    apply(namespace, other, model_deployment("bc", "iris-v1"))
    wait_condition(namespace, "modeldeployment", "bc", "InvalidSpec", "True", "ModelMismatch")


def test_given_retrain_policy_with_dangling_template_references_when_reconciled_then_not_ready_until_they_exist(
        operator, namespace):
    policy = {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy", "metadata": {"name": "bc-retrain"},
              "spec": {"model": "breast-cancer", "triggers": {"schedule": "0 3 * * 0"},
                       "template": {"training": {"featureSet": {"name": "bc-features"},
                                                 "estimator": "sklearn.linear_model.LogisticRegression"}}}}
    apply(namespace, policy)
    rp = wait_condition(namespace, "retrainpolicy", "bc-retrain", "InvalidSpec", "True", "FeatureSetNotFound")
    assert condition(rp, "Ready")["status"] == "False" and rp["status"]["phase"] == "Failed", rp["status"]
    assert "spec.template.training.featureSet.name" in condition(rp, "InvalidSpec")["message"]

    apply(namespace, feature_set("bc-features"))
    rp = wait_condition(namespace, "retrainpolicy", "bc-retrain", "InvalidSpec", "False", "Valid")
    rp = wait_condition(namespace, "retrainpolicy", "bc-retrain", "Ready", "True", "Watching")
    assert rp["status"]["observedGeneration"] == 1 and rp["status"]["phase"] == "Idle", rp["status"]
    assert rp["status"].get("nextScheduledAt"), rp["status"]


def test_given_version_training_on_missing_featureset_when_reconciled_then_no_job_until_it_appears(
        operator, namespace):
    apply(namespace, model_version("bc-fs", training={"featureSet": {"name": "bc-features"},
                                                      "estimator": "sklearn.linear_model.LogisticRegression"}))
    mv = wait_condition(namespace, "modelversion", "bc-fs", "InvalidSpec", "True", "FeatureSetNotFound")
    assert mv["status"]["phase"] == "Pending" and mv["status"]["stage"] == "None"
    assert jobs_of(namespace, "bc-fs") == []

    apply(namespace, feature_set("bc-features"))
    mv = wait_condition(namespace, "modelversion", "bc-fs", "InvalidSpec", "False", "Valid")
    wait_condition(namespace, "modelversion", "bc-fs", "Ready", "False", "WaitingForFeatureSet")
    before = reconciles("ModelVersion")
    wait_for("a pass later", lambda: reconciles("ModelVersion") - before >= 1)
    # still nothing trained on a FeatureSet without a snapshot
    assert jobs_of(namespace, "bc-fs") == []


def test_given_point_in_time_labels_on_a_featureset_without_history_then_invalid_spec_until_it_keeps_one(
        operator, namespace):
    labels = {"source": {"uri": "s3://mlops/labels/bc.csv"}, "timestampColumn": "observed_at", "labelColumn": "y"}
    apply(namespace, feature_set("bc-features"),  # entityKey, but no timestampColumn: no history to join with
          model_version("bc-pit", training={"featureSet": {"name": "bc-features", "labels": labels},
                                            "estimator": "sklearn.linear_model.LogisticRegression"}))
    mv = wait_condition(namespace, "modelversion", "bc-pit", "InvalidSpec", "True", "FeatureSetWithoutHistory")
    message = condition(mv, "InvalidSpec")["message"]
    assert message.startswith("spec.training.featureSet.labels: FeatureSet 'bc-features' has no timestampColumn")
    assert mv["status"]["phase"] == "Pending" and jobs_of(namespace, "bc-pit") == []
    wait_for("a Warning event", lambda: ("Warning", "FeatureSetWithoutHistory") in event_reasons(namespace, "bc-pit"))

    kubectl("-n", namespace, "patch", "featureset", "bc-features", "--type=merge", "-p",
            json.dumps({"spec": {"timestampColumn": "mean texture",
                                 "features": [{"name": "mean radius", "dtype": "float"}]}}))
    wait_condition(namespace, "modelversion", "bc-pit", "InvalidSpec", "False", "Valid")
