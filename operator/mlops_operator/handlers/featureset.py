"""FeatureSet: a timer drives the one-step-per-pass loop of ``logic.featureset``; this module is the I/O.

Reads exactly what ``needs`` asks for — the active materialize Job and its pods' termination message, the
S3 secret's bucket, and, once the Job completed, the snapshot's manifest and stats.json (verified
against the manifest) — then creates the Job the decision asks for (AlreadyExists is success).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError

from mlops_operator.api.v1alpha1.featureset import FeatureSet
from mlops_operator.builders.materialize import CONTAINER, snapshot_prefix
from mlops_operator.handlers.observe import create_job, job_settings, s3_secret, store_for
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, register, unparseable
from mlops_operator.logic import featureset as logic
from mlops_operator.logic.jobs import JobState, last_termination, observe_job
from mlops_operator.providers import kube, storage

KIND, PLURAL = "FeatureSet", "featuresets"
DATA_FILE, STATS_FILE = "data.parquet", "stats.json"
STATS_LIMIT = 16 * 1024 * 1024  # per-feature summaries; the data itself is never read by the operator


def read_committed(store: storage.ArtifactStore, prefix: str) -> logic.Committed:
    """The committed snapshot at ``prefix`` (blocking; run in a thread)."""
    try:
        manifest = store.read_manifest(prefix)
        stats = json.loads(store.fetch_verified(prefix, STATS_FILE, manifest, max_bytes=STATS_LIMIT))
    except storage.IntegrityError as exc:
        return logic.Committed(prefix, problem="SnapshotIntegrity", message=str(exc))
    except storage.AccessDenied as exc:
        return logic.Committed(prefix, problem="AccessDenied", message=str(exc))
    except storage.StorageError as exc:
        return logic.Committed(prefix, problem="StorageUnavailable", message=str(exc))
    except ValueError as exc:
        return logic.Committed(prefix, problem="SnapshotIntegrity", message=f"{STATS_FILE} at {prefix}: {exc}")
    data = manifest["files"].get(DATA_FILE) or {}
    return logic.Committed(prefix, rows=stats.get("rows"), sha256=data.get("sha256"),
                           created_at=manifest.get("createdAt"), quality=stats.get("quality"))


async def observe(fs: FeatureSet, status: dict[str, Any], need: logic.Needs, secret_name: str) -> logic.World:
    ns, name = fs.metadata["namespace"], fs.metadata["name"]
    job = termination = None
    if need.job:
        job_name = status["activeJob"]
        body = await kube.get_job(ns, job_name)
        uid = (body or {}).get("metadata", {}).get("uid")
        finished = body is not None and bool((body.get("status") or {}).get("failed"))
        pods = await kube.list_pods(ns, f"batch.kubernetes.io/controller-uid={uid}") if finished else []
        job = observe_job(job_name, body, pods, container=CONTAINER)
        term = last_termination(pods, CONTAINER)
        termination = logic.parse_termination((term or {}).get("message"))
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


async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
    """One pass over one FeatureSet."""
    try:
        fs = FeatureSet.from_body(obj)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    status = obj.get("status") or {}
    created = False
    try:
        world = await observe(fs, status, logic.needs(status), ctx.settings.s3_secret)
        decision = logic.decide(fs, status, world, job_settings(ctx.settings), ctx.now)
        if decision.job is not None:
            created = await create_job(KIND, fs.metadata["namespace"], decision.job)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    return Outcome(status=decision.status, events=decision.events, acted=created,
                   retry_after=ctx.backoff() if decision.retry else None)


register(KIND, PLURAL, step, on_change=("spec", ["metadata", "annotations", logic.REQUEST_ANNOTATION]))
