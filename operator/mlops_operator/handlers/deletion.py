"""Deleting ModelVersions and FeatureSets: protection of served versions, then the object's own files.

The decisions are ``logic.deletion``'s; these handlers run only on objects that carry the finalizer (their
``when`` filters are the same predicates, so Kopf adds it exactly there and removes it when they stop
holding). A ModelVersion still routed to by a ModelDeployment waits: condition ``Deleting``/``InUse`` and
an event name the deployment, and the handler looks again every reconcile interval. Files are deleted
only through ``ArtifactStore.delete_version``, which checks the manifest's owner first: a prefix committed
by another object is retained with a Warning and the object is released — a finalizer is never held
forever on something that is not ours to delete. Storage or Secret trouble is transient: back-off.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Mapping, NoReturn

import kopf
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import GROUP, VERSION, get_condition
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.builders.layout import snapshot_prefix
from mlops_operator.handlers.observe import artifact_prefix
from mlops_operator.logic import deletion
from mlops_operator.logic.modelversion import should_delete_artifacts
from mlops_operator.logic.status import backoff_delay, mark_condition
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube, storage
from mlops_operator.providers.s3_access import s3_secret, store_for

def model_version_filter(meta: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    return deletion.model_version_needs_finalizer(meta, status)


def feature_set_filter(meta: Mapping[str, Any], **_: Any) -> bool:
    return deletion.feature_set_needs_finalizer(meta)


def _delay(retry: int) -> float:
    s = operator_settings()
    return backoff_delay(retry, s.retry_base_delay, s.retry_max_delay)


async def hold(plural: str, body: Mapping[str, Any], reason: str, message: str, delay: float) -> NoReturn:
    """Record why the deletion waits (condition ``Deleting``, an event when that changes), then retry."""
    meta, status = body["metadata"], body.get("status") or {}
    before = get_condition(status.get("conditions"), deletion.DELETING) or {}
    if (before.get("reason"), before.get("message")) != (reason, message):
        new = mark_condition(status, deletion.DELETING, "True", reason, message[:4096],
                             generation=meta.get("generation"), now=datetime.now(timezone.utc))
        try:
            await kube.patch_status(plural, meta["namespace"], meta["name"], {"conditions": new["conditions"]})
        except kube.KubeError as exc:
            if exc.status != 404:
                raise kopf.TemporaryError(f"{message} (and recording it failed: {exc})", delay=delay) from exc
        kopf.event(dict(body), type="Warning" if reason != deletion.IN_USE else "Normal",
                   reason="DeletionWaits" if reason == deletion.IN_USE else "DeletionRetrying", message=message[:1024])
    raise kopf.TemporaryError(message, delay=delay)


async def _store(plural: str, body: Mapping[str, Any], retry: int) -> tuple[storage.ArtifactStore, dict[str, str]]:
    namespace = body["metadata"]["namespace"]
    secret, problem = await s3_secret(namespace, operator_settings().s3_secret)
    if secret is None:
        await hold(plural, body, "SecretMissing", f"cannot delete the artifacts: {problem}", _delay(retry))
    assert secret is not None
    return await asyncio.to_thread(store_for, secret), secret


def _owner(body: Mapping[str, Any], kind: str) -> dict[str, str]:
    meta = body["metadata"]
    return {"namespace": meta["namespace"], "kind": kind, "name": meta["name"]}


async def delete_owned(plural: str, body: Mapping[str, Any], store: storage.ArtifactStore, prefix: str,
                       owner: Mapping[str, str], retry: int) -> bool:
    """Delete one version prefix if ``owner`` committed it; False (and a Warning) when it is not ours."""
    try:
        count = await asyncio.to_thread(store.delete_version, prefix, owner)
    except storage.OwnerMismatch as exc:
        kopf.event(dict(body), type="Warning", reason="ArtifactsRetained", message=f"{exc}"[:1024])
        return False
    except storage.IntegrityError as exc:  # an unreadable manifest proves no owner: never delete on a guess
        kopf.event(dict(body), type="Warning", reason="ArtifactsRetained",
                   message=f"{prefix} retained: its owner cannot be read ({exc})"[:1024])
        return False
    except storage.StorageError as exc:
        await hold(plural, body, "StorageUnavailable", f"deleting {prefix} failed: {exc}", _delay(retry))
    kopf.event(dict(body), type="Normal", reason="ArtifactsDeleted", message=f"deleted {prefix} ({count} objects)")
    return True


@kopf.on.delete(GROUP, VERSION, "modelversions", id="artifacts", when=model_version_filter)
async def delete_model_version(body: kopf.Body, logger: kopf.Logger, retry: int, **_: Any) -> None:
    """Wait while routed to; then delete the own trained prefix if annotated; then release."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        deployments = await kube.list_custom("modeldeployments", namespace)
    except kube.KubeError as exc:
        raise kopf.TemporaryError(f"cannot read the ModelDeployments of {namespace}: {exc}", delay=_delay(retry))
    mv: ModelVersion | None = None
    try:
        mv = ModelVersion.from_body(body)
        artifacts = should_delete_artifacts(mv)
    except ValidationError as exc:  # never hold the finalizer on an object we cannot read
        artifacts = (False, f"artifacts retained: the operator cannot read the object ({exc.errors()[:1]})")
    step = deletion.decide_model_version_deletion(name, deletion.routed_by(name, deployments), artifacts)
    if step.action == deletion.Action.WAIT:
        await hold("modelversions", body, step.reason, step.message, operator_settings().reconcile_interval)
    if step.action == deletion.Action.RELEASE or mv is None:
        logger.info(step.message)
        return
    store, secret = await _store("modelversions", body, retry)
    await delete_owned("modelversions", body, store, artifact_prefix(mv, secret), _owner(body, "ModelVersion"), retry)


def snapshot_versions(keys: list[str], root: str) -> list[str]:
    """The version directories directly under ``root`` (a bucket-relative key ending in ``/``)."""
    return sorted({k[len(root):].split("/", 1)[0] for k in keys if k.startswith(root) and "/" in k[len(root):]})


@kopf.on.delete(GROUP, VERSION, "featuresets", id="snapshots", when=feature_set_filter)
async def delete_feature_set(body: kopf.Body, retry: int, **_: Any) -> None:
    """Delete every snapshot committed by this FeatureSet under ``features/<ns>/<fs>/``; others' are kept."""
    meta = body["metadata"]
    store, secret = await _store("featuresets", body, retry)
    # features/<ns>/<fs>/: the layout's snapshot prefix without its version segment
    root = store.location(snapshot_prefix(secret["S3_BUCKET"], meta["namespace"], meta["name"], "v").removesuffix("v/"))
    try:
        keys = await asyncio.to_thread(store.list_keys, root)
    except storage.StorageError as exc:
        await hold("featuresets", body, "StorageUnavailable", f"listing {root} failed: {exc}", _delay(retry))
    for version in snapshot_versions(keys, root.key):
        await delete_owned("featuresets", body, store, f"s3://{root.bucket}/{root.key}{version}/",
                           _owner(body, "FeatureSet"), retry)
