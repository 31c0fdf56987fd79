"""The scoring Job of one BatchPrediction run, as a plain manifest (pure and deterministic).

Same pod shape as training and materializing (``builders.job``): restricted profile, read-only root,
``/tmp`` scratch (the downloaded input lives there, never in memory), S3 credentials by ``secretKeyRef``,
no service-account token, fail at once on exit codes 2 (invalid input: an unreadable dataset, a missing
column) and 4 (the run's prefix is committed by another object). The name is a pure function of
(BatchPrediction, run id), and the run id is recorded in status before the Job is created, so a crash
between the two finds the same Job instead of starting a second one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.builders.job import build_runtime_job, s3_env
from mlops_operator.builders.labels import runtime_job_labels
from mlops_operator.builders.names import child_name

CONTAINER = "predict"
LABEL_BATCHPREDICTION = "mlops.dev/batchprediction"
LABEL_RUN = "mlops.dev/run"


def batch_job_name(batch_prediction: str, run: str) -> str:
    """``bp-<name>-<run>``, truncated and hashed to 63 characters when the name is long."""
    return child_name("bp", batch_prediction, run)


def batch_labels(batch_prediction: str, run: str | None = None) -> dict[str, str]:
    return runtime_job_labels(LABEL_BATCHPREDICTION, batch_prediction, "batch-predict", LABEL_RUN, run)


@dataclass(frozen=True)
class BatchJobInput:
    """Everything the scoring Job depends on; the builder adds nothing that is not in here."""

    owner: Mapping[str, Any]          # the BatchPrediction body (apiVersion, kind, metadata.name/uid/namespace)
    run: str
    output_prefix: str                # s3://<bucket>/predictions/<namespace>/<name>/<run>/
    model_uri: str                    # the ModelVersion's artifact prefix (status.artifact.uri)
    model_sha256: str                 # the registry's sha256, checked before anything is unpickled
    model_version: str
    input: Mapping[str, Any]          # {uri, format} or {snapshotUri, featureSet, version, entityKey}
    passthrough: tuple[str, ...]
    chunk_rows: int
    image: str
    s3_secret: str
    spec_hash: str = ""
    active_deadline_seconds: int = 3600
    backoff_limit: int = 1
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    tmp_size_limit: str = "4Gi"
    ttl_seconds_after_finished: int | None = None
    pod: PodOverrides | None = None   # spec.pod merged over the operator's podDefaults


def _compact(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def batch_env(inp: BatchJobInput) -> list[dict[str, Any]]:
    meta = inp.owner["metadata"]
    plain = {
        "MLOPS_BATCH_RUN": inp.run,
        "MLOPS_BATCH_OUTPUT_PREFIX": inp.output_prefix,
        "MLOPS_BATCH_MODEL_URI": inp.model_uri,
        "MLOPS_BATCH_MODEL_SHA256": inp.model_sha256,
        "MLOPS_BATCH_MODEL_VERSION": inp.model_version,
        "MLOPS_BATCH_INPUT": _compact(dict(inp.input)),
        "MLOPS_BATCH_PASSTHROUGH": _compact(list(inp.passthrough)),
        "MLOPS_BATCH_CHUNK_ROWS": str(inp.chunk_rows),
        "MLOPS_OWNER": _compact({"namespace": meta["namespace"], "kind": "BatchPrediction", "name": meta["name"],
                                 "uid": meta["uid"]}),
        "MLOPS_SPEC_HASH": inp.spec_hash,
        "HOME": "/tmp",
    }
    return [{"name": k, "value": v} for k, v in plain.items()] + s3_env(inp.s3_secret)


def build_batch_job(inp: BatchJobInput) -> dict[str, Any]:
    """The Job manifest that scores one run."""
    name = inp.owner["metadata"]["name"]
    return build_runtime_job(
        name=batch_job_name(name, inp.run), owner=inp.owner, labels=batch_labels(name, inp.run),
        container_name=CONTAINER, command=["mlops-batch-predict"], env=batch_env(inp), image=inp.image,
        image_pull_policy=inp.image_pull_policy, backoff_limit=inp.backoff_limit,
        active_deadline_seconds=inp.active_deadline_seconds, resources=inp.resources,
        tmp_size_limit=inp.tmp_size_limit, ttl_seconds_after_finished=inp.ttl_seconds_after_finished, pod=inp.pod)
