"""ModelVersion reconciliation on the real apiserver and MinIO (no training pod needs to run here).

Exactly one training Job with the restricted pod spec, even across an operator restart; registering an
artifact verifies its sha256 (tampered -> Rejected with IntegrityError); S3 down -> Retrying with
back-off, recovering once the Secret points at a working endpoint.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from mlops_operator.providers.storage import sha256_hex
from test_operator_references import (  # noqa: F401  (shared fixtures)
    apply,
    condition,
    crds,
    event_reasons,
    get,
    jobs_of,
    model_version,
    reconciles,
    operator,
    start_operator,
    wait_condition,
    wait_for,
)
from test_storage_minio import empty_prefix
from tests.conftest import kubectl

pytestmark = pytest.mark.integration

MODEL_BYTES = b"\x80\x05not-really-a-model" * 100
METRICS = {"metrics": {"accuracy": 0.97, "roc_auc": 0.99}, "parameters": {"C": 1.0},
           "data": {"sha256": "d" * 64}}


def s3_secret(namespace: str, values: dict[str, str], name: str = "mlops-s3") -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    apply(namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
                      "data": data})


@pytest.fixture()
def secret(s3_env, namespace) -> dict[str, str]:
    values = {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET")}
    s3_secret(namespace, values)
    return values



@pytest.fixture()
def registered(s3_env, store) -> Iterator[str]:
    """A committed version (model.joblib + metrics.json) under a fresh prefix."""
    prefix = f"s3://{s3_env['S3_BUCKET']}/tests/operator/{uuid.uuid4().hex}/"
    store.write_version(prefix, {"model.joblib": MODEL_BYTES, "metrics.json": json.dumps(METRICS).encode()})
    yield prefix
    empty_prefix(store, prefix)


def test_given_version_when_reconciled_then_exactly_one_restricted_job_even_after_restart(
        start_operator, namespace, secret):
    with start_operator():
        apply(namespace, model_version("bc-v1"))
        mv = wait_for("phase Training", lambda: (o := get(namespace, "modelversion", "bc-v1"))
                      and o.get("status", {}).get("phase") == "Training" and o)
        assert mv["status"]["lineage"]["job"] == "mv-bc-v1-train"
        assert mv["status"]["stage"] == "None"
        assert ("Normal", "TrainingStarted") in wait_for(
            "TrainingStarted event", lambda: (r := event_reasons(namespace, "bc-v1")) and
            ("Normal", "TrainingStarted") in r and r)
    with start_operator():  # a restart re-reads the world: the Job is found again, not duplicated
        before = reconciles("ModelVersion")
        wait_for("three passes after the restart", lambda: reconciles("ModelVersion") - before >= 3)
        jobs = jobs_of(namespace, "bc-v1")
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["name"] == "mv-bc-v1-train"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelVersion", mv["metadata"]["uid"], True)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-s3",
                                                                        "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["MLOPS_ARTIFACT_PREFIX"]["value"] == f"s3://{secret['S3_BUCKET']}/models/{namespace}/breast-cancer/bc-v1/"
    # The namespace enforces Pod Security "restricted": a pod exists only if admission accepted the spec.
    wait_for("the training pod", lambda: json.loads(kubectl(
        "-n", namespace, "get", "pods", "-l", "job-name=mv-bc-v1-train", "-o", "json").stdout)["items"])


def test_given_registered_artifact_when_sha256_matches_then_ready_with_metrics(operator, namespace, secret, registered):
    apply(namespace, model_version("bc-reg", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)},
                                   gates={"minMetrics": {"accuracy": 0.9}}))
    mv = wait_condition(namespace, "modelversion", "bc-reg", "Ready", "True", "GatesPassed")
    status = mv["status"]
    assert status["phase"] == "Ready"
    assert status["artifact"] == {"uri": registered, "sha256": sha256_hex(MODEL_BYTES),
                                  "sizeBytes": len(MODEL_BYTES), "format": "sklearn-pickle"}
    assert status["metrics"] == METRICS["metrics"]
    assert status["gateResults"][0]["passed"] is True
    assert jobs_of(namespace, "bc-reg") == []
    assert {("Normal", "ArtifactVerified"), ("Normal", "Ready")} <= event_reasons(namespace, "bc-reg")


def test_given_registered_artifact_when_sha256_differs_or_bytes_flipped_then_rejected_integrity_error(
        operator, namespace, secret, registered, store):
    apply(namespace, model_version("bc-wrong", artifact={"uri": registered, "sha256": "f" * 64}))
    wrong = wait_condition(namespace, "modelversion", "bc-wrong", "IntegrityError", "True", "Sha256Mismatch")
    assert wrong["status"]["phase"] == "Rejected" and "artifact" not in wrong["status"]

    flipped = bytearray(MODEL_BYTES)
    flipped[10] ^= 0x01
    store.put_object(store.object_uri(registered, "model.joblib"), bytes(flipped))  # one bit, behind its back
    apply(namespace, model_version("bc-flip", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)}))
    flip = wait_condition(namespace, "modelversion", "bc-flip", "IntegrityError", "True", "ChecksumMismatch")
    assert flip["status"]["phase"] == "Rejected"
    assert condition(flip, "Ready")["reason"] == "IntegrityError"


def _retrying_passes() -> float:
    return REGISTRY.get_sample_value("mlops_operator_reconciles_total",
                                     {"kind": "ModelVersion", "result": "retrying"}) or 0.0


def test_given_s3_unreachable_when_registering_then_retrying_with_backoff_and_recovers_when_fixed(
        operator, namespace, secret, registered):
    s3_secret(namespace, {**secret, "S3_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing listens there
    apply(namespace, model_version("bc-down", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)}))
    mv = wait_condition(namespace, "modelversion", "bc-down", "Retrying", "True", "StorageUnavailable")
    assert mv["status"]["phase"] == "Validating"
    before = _retrying_passes()
    time.sleep(8)
    assert _retrying_passes() - before <= 6, "transient failures must back off, not spin"

    s3_secret(namespace, secret)  # credentials/endpoint fixed: converges without touching the object
    mv = wait_condition(namespace, "modelversion", "bc-down", "Ready", "True", timeout=90)
    assert condition(mv, "Retrying")["status"] == "False"
