"""FeatureSet: a timer drives the one-step-per-pass loop of ``logic.featureset``; this module is the I/O.

Reads exactly what ``needs`` asks for — the active materialize Job and its pods' termination message, the
S3 secret's bucket, and, once the Job completed, the snapshot's manifest and stats.json (verified
against the manifest) — then creates the Job the decision asks for (AlreadyExists is success).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_operator.api.v1alpha1.featureset import FeatureSet
from mlops_operator.builders.materialize import CONTAINER, snapshot_prefix
from mlops_operator.handlers.observe import (
    CommittedUnreadable,
    observe_runtime_job,
    read_committed_json,
)
from mlops_operator.handlers.reconciler import Snapshot, job_reconciler, register
from mlops_operator.logic import featureset as logic
from mlops_operator.logic.jobs import JobState
from mlops_operator.providers import storage
from mlops_operator.providers.s3_access import s3_secret, store_for

KIND, PLURAL = "FeatureSet", "featuresets"
DATA_FILE, STATS_FILE = "data.parquet", "stats.json"
STATS_LIMIT = 16 * 1024 * 1024  # per-feature summaries; the data itself is never read by the operator


def read_committed(store: storage.ArtifactStore, prefix: str) -> logic.Committed:
    """The committed snapshot at ``prefix`` (blocking; run in a thread)."""
    try:
        manifest, stats = read_committed_json(store, prefix, STATS_FILE, STATS_LIMIT, "SnapshotIntegrity")
    except CommittedUnreadable as exc:
        return logic.Committed(prefix, problem=exc.reason, message=str(exc))
    data = manifest["files"].get(DATA_FILE) or {}
    return logic.Committed(prefix, rows=stats.get("rows"), sha256=data.get("sha256"),
                           created_at=manifest.get("createdAt"), quality=stats.get("quality"))


async def observe(fs: FeatureSet, status: dict[str, Any], need: logic.Needs, secret_name: str) -> logic.World:
    ns, name = fs.metadata["namespace"], fs.metadata["name"]
    job = termination = None
    if need.job:
        online = fs.spec.online is not None and fs.spec.online.enabled  # its summary says what went online
        job, termination = await observe_runtime_job(ns, status["activeJob"], CONTAINER, on_success=online)
    bucket, why, committed = None, "", None
    if need.bucket:
        secret, why = await s3_secret(ns, secret_name)
        if secret is not None:
            bucket = secret["S3_BUCKET"]
            if need.committed and job is not None and job.state == JobState.SUCCEEDED:
                store = await asyncio.to_thread(store_for, secret)
                prefix = snapshot_prefix(bucket, ns, name, status["activeVersion"])
                committed = await asyncio.to_thread(read_committed, store, prefix)
    return logic.World(job=job, termination=termination, bucket=bucket, storage_problem=why, committed=committed)


async def observe_pass(snap: Snapshot[FeatureSet]) -> logic.World:
    return await observe(snap.model, snap.status, logic.needs(snap.status), snap.ctx.settings.s3_secret)


RECONCILER = job_reconciler(KIND, PLURAL, FeatureSet.from_body, observe_pass, logic.decide)
step = RECONCILER.step
register(RECONCILER, on_change=("spec", ["metadata", "annotations", logic.REQUEST_ANNOTATION]))
