"""BatchPrediction: a timer drives the one-step-per-pass loop of ``logic.batchprediction``; this module is the I/O.

Reads the referenced ModelVersion (and FeatureSet), the S3 secret's bucket, and for an active run its Job,
its pods' termination message, the parts written so far (progress) and, once the Job completed, the run's
manifest and ``run.json`` (verified against the manifest) — then creates the Job the decision asks for
(AlreadyExists is success).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_operator.api.v1alpha1.batchprediction import BatchPrediction
from mlops_operator.builders.batchprediction import CONTAINER
from mlops_operator.builders.layout import predictions_prefix
from mlops_operator.handlers.observe import (
    CommittedUnreadable,
    observe_runtime_job,
    read_committed_json,
)
from mlops_operator.handlers.reconciler import Snapshot, job_reconciler, register
from mlops_operator.handlers.references import resolve
from mlops_operator.logic import batchprediction as logic
from mlops_operator.logic.jobs import JobState
from mlops_operator.providers import storage
from mlops_operator.providers.s3_access import s3_secret, store_for

KIND, PLURAL = "BatchPrediction", "batchpredictions"
RUN_FILE = "run.json"
RUN_LIMIT = 1024 * 1024


def read_committed(store: storage.ArtifactStore, prefix: str) -> logic.Committed:
    """The committed run at ``prefix`` (blocking; run in a thread)."""
    try:
        _, run = read_committed_json(store, prefix, RUN_FILE, RUN_LIMIT, "OutputIntegrity")
    except CommittedUnreadable as exc:
        return logic.Committed(prefix, problem=exc.reason, message=str(exc))
    return logic.Committed(prefix, rows=run.get("rows"), files=len(run.get("parts") or []))


def count_parts(store: storage.ArtifactStore, prefix: str) -> int | None:
    """Parquet parts written under ``prefix`` so far (progress; None when S3 cannot say)."""
    try:
        return sum(1 for key in store.list_keys(prefix) if key.endswith(".parquet"))
    except storage.StorageError:
        return None


async def observe(bp: BatchPrediction, status: dict[str, Any], secret_name: str) -> logic.World:
    ns, name = bp.metadata["namespace"], bp.metadata["name"]
    targets, problems = await resolve(logic.references(bp), ns)
    model = next((t for r, t in targets.items() if r.kind == "ModelVersion"), None)
    feature_set = next((t for r, t in targets.items() if r.kind == "FeatureSet"), None)
    run = status.get("activeRun")
    job = termination = committed = chunks = None
    bucket, why = None, ""
    if run:
        job, termination = await observe_runtime_job(ns, status["activeJob"], CONTAINER)
        secret, why = await s3_secret(ns, secret_name)
        if secret is not None:
            bucket = secret["S3_BUCKET"]
            prefix = predictions_prefix(bucket, ns, name, run)
            if job.state in (JobState.SUCCEEDED, JobState.ACTIVE):
                store = await asyncio.to_thread(store_for, secret)
                if job.state == JobState.SUCCEEDED:
                    committed = await asyncio.to_thread(read_committed, store, prefix)
                else:
                    chunks = await asyncio.to_thread(count_parts, store, prefix)
    return logic.World(problems=tuple(problems), model=model, feature_set=feature_set, bucket=bucket,
                       storage_problem=why, job=job, termination=termination, committed=committed,
                       chunks_written=chunks)


async def observe_pass(snap: Snapshot[BatchPrediction]) -> logic.World:
    return await observe(snap.model, snap.status, snap.ctx.settings.s3_secret)


RECONCILER = job_reconciler(KIND, PLURAL, BatchPrediction.from_body, observe_pass, logic.decide)
step = RECONCILER.step
register(RECONCILER, on_change=("spec", ["metadata", "annotations", logic.REQUEST_ANNOTATION]))
