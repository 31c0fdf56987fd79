"""Gathering what a ModelVersion pass needs from the world: references, S3, the Job, the artifact.

The I/O half of ``logic.modelversion``: ``needs`` says what to read, this module reads exactly that and
hands back a ``World``. S3 credentials come from the Secret named by ``MLOPS_S3_SECRET`` in the object's
own namespace (a team's bucket is the team's business), through ``providers.s3_access``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Mapping

from mlops_operator import instruments
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.api.v1alpha1.pod import parse_pod_defaults
from mlops_operator.builders.layout import model_version_prefix
from mlops_operator.handlers.references import resolve
from mlops_operator.logic import references as refs_logic
from mlops_operator.logic.gates import Baseline
from mlops_operator.logic.jobs import JobObservation, JobSettings, last_termination, observe_job, parse_termination
from mlops_operator.logic.modelversion import ArtifactCheck, Needs, World, job_name
from mlops_operator.providers import kube, storage
from mlops_operator.providers.s3_access import s3_secret, store_for
from mlops_operator.operator_settings import OperatorSettings

MODEL_FILE, MLMODEL_FILE, METRICS_FILE = "model.joblib", "MLmodel", "metrics.json"
def job_settings(s: OperatorSettings) -> JobSettings:
    """The runtime-Job configuration from the operator's settings (training and materialize Jobs alike)."""
    return JobSettings(image=s.runtime_image, s3_secret=s.s3_secret, image_pull_policy=s.image_pull_policy,
                       backoff_limit=s.training_backoff_limit, default_timeout=s.default_training_timeout,
                       ttl_seconds_after_finished=s.job_ttl_seconds_after_finished,
                       pod_defaults=parse_pod_defaults(s.pod_defaults),
                       online_store_url=s.online_store_url.strip(), online_store_secret=s.online_store_secret)


async def create_job(kind: str, namespace: str, job: dict[str, Any]) -> bool:
    """Create ``job`` (AlreadyExists is success); True when this call created it (counted per kind)."""
    _, created = await kube.create_job(namespace, job)
    if created:
        instruments.JOBS_CREATED.labels(kind).inc()
    return created


async def observe_runtime_job(namespace: str, name: str, container: str,
                              on_success: bool = False) -> tuple[JobObservation, dict[str, Any] | None]:
    """A runtime Job (materialize, scoring) and, once a pod of it failed (or, with ``on_success``, once it
    succeeded), its container's termination summary."""
    body = await kube.get_job(namespace, name)
    uid = (body or {}).get("metadata", {}).get("uid")
    status = (body or {}).get("status") or {}
    read = body is not None and bool(status.get("failed") or (on_success and status.get("succeeded")))
    pods = await kube.list_pods(namespace, f"batch.kubernetes.io/controller-uid={uid}") if read else []
    return (observe_job(name, body, pods, container=container),
            parse_termination((last_termination(pods, container) or {}).get("message")))


class CommittedUnreadable(Exception):
    """A committed version's summary file could not be read: ``reason`` says why, for a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_committed_json(store: storage.ArtifactStore, prefix: str, name: str, limit: int,
                        integrity_reason: str) -> tuple[dict[str, Any], Any]:
    """(manifest, parsed ``name``) of the committed version at ``prefix``, ``name`` verified against the manifest
    (blocking; run in a thread). Raises ``CommittedUnreadable`` with ``integrity_reason``, AccessDenied or
    StorageUnavailable."""
    try:
        manifest = store.read_manifest(prefix)
        return manifest, json.loads(store.fetch_verified(prefix, name, manifest, max_bytes=limit))
    except storage.IntegrityError as exc:
        raise CommittedUnreadable(integrity_reason, str(exc)) from exc
    except storage.AccessDenied as exc:
        raise CommittedUnreadable("AccessDenied", str(exc)) from exc
    except storage.StorageError as exc:
        raise CommittedUnreadable("StorageUnavailable", str(exc)) from exc
    except ValueError as exc:
        raise CommittedUnreadable(integrity_reason, f"{name} at {prefix}: {exc}") from exc


REPORT_LIMIT = 1024 * 1024  # metrics.json is copied into status (bounded there too); larger ones are not read


def inspect_artifact(store: storage.ArtifactStore, prefix: str) -> ArtifactCheck:
    """Verify every file of the version at ``prefix`` against its manifest (blocking; run in a thread).

    Files are verified by streaming, so a model larger than the operator's memory is checked in constant
    memory; only ``metrics.json`` (at most ``REPORT_LIMIT``) is kept, to copy its summary into status.
    """
    try:
        manifest = store.read_manifest(prefix)
    except storage.IntegrityError as exc:
        return ArtifactCheck(prefix, problem="integrity", reason="ManifestMissing", message=str(exc))
    except ValueError as exc:
        return ArtifactCheck(prefix, problem="integrity", reason="InvalidArtifactUri", message=str(exc))
    except storage.StorageError as exc:
        return _storage_problem(prefix, exc)
    files = manifest["files"]
    if MODEL_FILE not in files:
        return ArtifactCheck(prefix, problem="integrity", reason="ModelFileMissing",
                             message=f"the manifest at {prefix} does not list {MODEL_FILE}")
    raw_report: bytes | None = None
    try:
        for name in sorted(files):
            if name == METRICS_FILE and files[name]["size"] <= REPORT_LIMIT:
                raw_report = store.fetch_verified(prefix, name, manifest, max_bytes=REPORT_LIMIT)
            else:
                store.verify_file(prefix, name, manifest)
    except storage.IntegrityError as exc:
        return ArtifactCheck(prefix, problem="integrity", reason="ChecksumMismatch", message=str(exc))
    except storage.StorageError as exc:
        return _storage_problem(prefix, exc)
    report: Any = None
    if raw_report is not None:
        try:
            report = json.loads(raw_report)
        except ValueError as exc:
            return ArtifactCheck(prefix, problem="integrity", reason="ReportInvalid",
                                 message=f"{METRICS_FILE} at {prefix} is not JSON: {exc}")
    return ArtifactCheck(prefix, model_sha256=files[MODEL_FILE]["sha256"], model_size=files[MODEL_FILE]["size"],
                         format="mlflow-sklearn" if MLMODEL_FILE in files else "sklearn-pickle",
                         committed_at=manifest.get("createdAt"), report=report if isinstance(report, dict) else None,
                         owner=manifest.get("owner"), spec_hash=manifest.get("specHash"))


def read_report(store: storage.ArtifactStore, prefix: str) -> ArtifactCheck:
    """The verified ``metrics.json`` of the committed version at ``prefix`` (blocking; run in a thread).

    Read again at the gate for the stable version's same-rows score; ``report`` is None when the version
    has no (small enough) report, which the gate treats as "no same-rows score"."""
    reason = "ManifestMissing"
    try:
        manifest = store.read_manifest(prefix)
        entry = manifest["files"].get(METRICS_FILE)
        if entry is None or entry["size"] > REPORT_LIMIT:
            return ArtifactCheck(prefix)
        reason = "ChecksumMismatch"
        raw = store.fetch_verified(prefix, METRICS_FILE, manifest, max_bytes=REPORT_LIMIT)
    except storage.IntegrityError as exc:
        return ArtifactCheck(prefix, problem="integrity", reason=reason, message=str(exc))
    except storage.StorageError as exc:
        return _storage_problem(prefix, exc)
    try:
        report = json.loads(raw)
    except ValueError as exc:
        return ArtifactCheck(prefix, problem="integrity", reason="ReportInvalid",
                             message=f"{METRICS_FILE} at {prefix} is not JSON: {exc}")
    return ArtifactCheck(prefix, report=report if isinstance(report, dict) else None)


def _storage_problem(prefix: str, exc: storage.StorageError) -> ArtifactCheck:
    if isinstance(exc, storage.AccessDenied):
        return ArtifactCheck(prefix, problem="denied", reason="AccessDenied", message=str(exc))
    if isinstance(exc, storage.StorageUnavailable):
        return ArtifactCheck(prefix, problem="unavailable", reason="StorageUnavailable", message=str(exc))
    return ArtifactCheck(prefix, problem="storage", reason="StorageError", message=str(exc))


def artifact_prefix(mv: ModelVersion, secret: Mapping[str, str]) -> str:
    """Where this version's files are: the registered URI, or the layout's training prefix."""
    if mv.spec.artifact is not None:
        uri = mv.spec.artifact.uri
        return uri if uri.endswith("/") else uri + "/"
    return model_version_prefix(secret["S3_BUCKET"], mv.metadata["namespace"], mv.spec.model, mv.metadata["name"])


async def observe(mv: ModelVersion, need: Needs, s3_secret_name: str) -> World:
    """Read what ``need`` lists; API errors propagate as ``kube.KubeError`` for the caller to record."""
    ns = mv.metadata["namespace"]
    targets, problems = await resolve(need.references, ns)
    snapshot = next((refs_logic.snapshot(t, r.version) for r, t in targets.items()
                     if r.kind == "FeatureSet" and t is not None), None)
    prefix, why, store, committed = None, "", None, False
    if need.storage or need.artifact or need.report:
        secret, why = await s3_secret(ns, s3_secret_name)
        if secret is not None:
            prefix = artifact_prefix(mv, secret)
            store = (await asyncio.to_thread(store_for, secret)
                     if (need.artifact or need.committed or need.report) else None)
    if need.committed and store is not None and prefix is not None:
        committed = await asyncio.to_thread(_committed, store, prefix)
    job = None
    if need.job:
        name = job_name(mv)
        body = await kube.get_job(ns, name)
        failures = body is not None and (body.get("status") or {}).get("failed")
        uid = (body or {}).get("metadata", {}).get("uid")
        pods = await kube.list_pods(ns, f"batch.kubernetes.io/controller-uid={uid}") if failures else []
        job = observe_job(name, body, pods)
    artifact = await asyncio.to_thread(inspect_artifact, store, prefix) if (need.artifact and store and prefix) else None
    report = await asyncio.to_thread(read_report, store, prefix) if (need.report and store and prefix) else None
    baseline = await _baseline(ns, need.baseline, targets) if need.baseline else None
    return World(problems=problems, snapshot=snapshot, artifact_prefix=prefix, storage_problem=why, job=job,
                 artifact=artifact, baseline=baseline, committed=committed, report=report)


def _committed(store: storage.ArtifactStore, prefix: str) -> bool:
    """Whether a manifest exists at ``prefix``; S3 trouble here means "not known": training decides later
    (the trainer checks again, and the commit itself is conditional)."""
    try:
        return store.has_manifest(prefix)
    except storage.StorageError:
        return False


async def _baseline(namespace: str, deployment: str, targets: Mapping[refs_logic.Reference, Any]) -> Baseline:
    """The deployment's stable version: its recorded metrics and its verified artifact (for the Job to score).

    The ModelDeployment comes from the resolved references, or is read here when the phase resolves none
    (Training: only a Job created again needs it)."""
    md = next((t for r, t in targets.items() if r.kind == "ModelDeployment" and r.name == deployment), None)
    if md is None:
        md = await kube.get_custom("modeldeployments", namespace, deployment)
    stable = ((md or {}).get("status") or {}).get("stableVersion")
    if not stable:
        return Baseline(deployment)
    status = ((await kube.get_custom("modelversions", namespace, stable)) or {}).get("status") or {}
    artifact = status.get("artifact") or {}
    return Baseline(deployment, stable, status.get("metrics") or {}, uri=artifact.get("uri"),
                    sha256=artifact.get("sha256"))
