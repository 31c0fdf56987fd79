"""The scoring Job of a BatchPrediction run: deterministic name, restricted pod, Secret-only credentials, owner env."""

from __future__ import annotations

import json

import pytest

from mlops_operator.builders.batchprediction import BatchJobInput, batch_job_name, build_batch_job

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "BatchPrediction",
         "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"}}


def job(**kw) -> dict:
    inp = {"owner": OWNER, "run": "t-20260301-0200", "output_prefix": "s3://mlops/predictions/team-a/nightly/t-20260301-0200/",
           "model_uri": "s3://mlops/models/team-a/bc/bc-v1/", "model_sha256": "a" * 64, "model_version": "bc-v1",
           "input": {"uri": "s3://mlops/data/rows.parquet"}, "passthrough": ("id",), "chunk_rows": 5000,
           "image": "localhost/mlops-runtime:dev", "s3_secret": "team-s3", "spec_hash": "h" * 64, **kw}
    return build_batch_job(BatchJobInput(**inp))


def env(j: dict) -> dict:
    return {e["name"]: e for e in j["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_given_a_run_when_built_then_the_name_is_a_function_of_object_and_run():
    assert job()["metadata"]["name"] == "bp-nightly-t-20260301-0200" == batch_job_name("nightly", "t-20260301-0200")
    assert len(batch_job_name("n" * 80, "t-20260301-0200")) == 63
    assert job() == job()


def test_given_a_run_when_built_then_restricted_read_only_pod_without_token():
    j = job()
    pod = j["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["mlops-batch-predict"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert j["metadata"]["ownerReferences"][0]["kind"] == "BatchPrediction"
    assert j["metadata"]["labels"]["mlops.dev/batchprediction"] == "nightly"


def test_given_a_run_when_built_then_credentials_by_secret_and_the_owner_and_input_as_env():
    e = env(job())
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"):
        assert "value" not in e[key] and e[key]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"
    assert json.loads(e["MLOPS_OWNER"]["value"]) == {"namespace": "team-a", "kind": "BatchPrediction",
                                                     "name": "nightly", "uid": "u-1"}
    assert json.loads(e["MLOPS_BATCH_INPUT"]["value"]) == {"uri": "s3://mlops/data/rows.parquet"}
    assert json.loads(e["MLOPS_BATCH_PASSTHROUGH"]["value"]) == ["id"]
    assert e["MLOPS_BATCH_CHUNK_ROWS"]["value"] == "5000" and e["MLOPS_SPEC_HASH"]["value"] == "h" * 64
