"""``mlops-materialize``: build one FeatureSet snapshot and commit it to S3. Runs as the materialize Job.

Environment (set by the operator's Job builder, ``builders.materialize``):

===========================  =========================================================================
``MLOPS_FEATURESET``         the FeatureSet's name
``MLOPS_FEATURESET_UID``     its metadata.uid (recorded in transform.json; tells a retry from a reuse)
``MLOPS_FEATURESET_SPEC``    its spec as JSON, camelCase as in the CRD
``MLOPS_SNAPSHOT_VERSION``   v1, v2, ... (chosen by the operator)
``MLOPS_SNAPSHOT_PREFIX``    ``s3://<bucket>/features/<namespace>/<featureset>/<version>/``
``MLOPS_OWNER``              ``{"namespace", "kind", "name", "uid"}`` of the FeatureSet (in the manifest)
``MLOPS_SPEC_HASH``          hash of the data-shaping spec fields (in the manifest)
``S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``: as the trainer
``MLOPS_TERMINATION_LOG``    optional, default ``/dev/termination-log``
``MLOPS_ONLINE_STORE_URL``   with ``spec.online.enabled``: the online store (``REDIS_PASSWORD`` beside it)
===========================  =========================================================================

Steps: read the source, select and cast the columns (``features.snapshot``), run the quality checks on
the raw rows (``features.quality``), apply the quality policy, fit the transform (``features.transform``),
compute ``stats.json`` and commit ``data.parquet``, ``transform.json``, ``stats.json`` with the manifest last.
With ``spec.online.enabled``, each entity's row of the committed snapshot then goes to the online store
(``publish_online``; also for an adopted snapshot, so a retried Job finishes what a failed one began).

Exit codes (the operator maps them to the FeatureSet's status):

* ``0`` committed, or the prefix already holds a snapshot this FeatureSet committed from the same spec (a
  retried Job, or the FeatureSet deleted and re-applied from git): reported as is (adopted).
* ``2`` invalid input: spec, columns, values, or a violated quality check under policy ``fail``
  (reason ``QualityCheckFailed``; nothing is written).
* ``3`` storage error (endpoint down, access denied, a corrupt object, ...), or reason
  ``OnlineStoreUnavailable``: the snapshot is committed but the online store could not take its values.
* ``4`` reason ``VersionTaken``: the prefix holds a snapshot built from another spec (the FeatureSet was
  re-created with other data-shaping fields); nothing is written and the operator picks the next number.
* ``1`` unexpected internal error (a bug): traceback on stderr.

The termination log holds compact JSON (<= 4 KiB): ``{"ok": true, "version", "uri", "rows", "sha256"
(of data.parquet), "createdAt", "quality"}`` or ``{"ok": false, "reason", "message", "exitCode",
"quality"?}``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable, Mapping

import pandas as pd
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.featureset import FeatureSetSpec
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.features.online import Descriptor, latest_vectors
from mlops_operator.features.quality import blank_violations, check_quality
from mlops_operator.features.snapshot import build_snapshot
from mlops_operator.features.stats import stats_doc
from mlops_operator.features.transform import fit_transform_doc, policy_of
from mlops_operator.providers.storage import (
    AlreadyExistsError,
    ArtifactStore,
    IntegrityError,
    ObjectNotFound,
    S3Uri,
    same_owner,
)
from mlops_operator.runtime.train_artifacts import TERMINATION_LOG_LIMIT, to_json
from mlops_operator.runtime.job_main import (
    InvalidInput,
    classify,
    env_owner,
    env_prefix,
    parse_json_object,
    run_job,
)
from mlops_operator.runtime.online_store import OnlineStore, StoreUnavailable
from mlops_operator.runtime.train_data import format_by_name, frame_from_bytes, load_builtin

log = logging.getLogger("mlops.materialize")

ENV_FEATURESET = "MLOPS_FEATURESET"
ENV_FEATURESET_UID = "MLOPS_FEATURESET_UID"
ENV_SPEC = "MLOPS_FEATURESET_SPEC"
ENV_VERSION = "MLOPS_SNAPSHOT_VERSION"
ENV_PREFIX = "MLOPS_SNAPSHOT_PREFIX"
DATA_FILE = "data.parquet"
TRANSFORM_FILE = "transform.json"
STATS_FILE = "stats.json"
STATS_LIMIT = 16 * 1024 * 1024  # stats.json is per-feature summaries: anything larger is not ours

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID_INPUT, EXIT_STORAGE, EXIT_VERSION_TAKEN = 0, 1, 2, 3, 4
ONLINE_STORE_UNAVAILABLE = "OnlineStoreUnavailable"

Clock = Callable[[], datetime]


class QualityCheckFailed(InvalidInput):
    """Quality policy ``fail`` and a check failed: the snapshot is not published."""

    def __init__(self, message: str, quality: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.quality = dict(quality)


class OnlineStoreFailed(Exception):
    """The snapshot is committed, but its values could not be written to the online store."""


class VersionTaken(Exception):
    """The prefix holds a committed snapshot of another FeatureSet (same name, other uid)."""


@dataclass(frozen=True)
class MaterializeConfig:
    feature_set: str
    feature_set_uid: str | None
    spec: FeatureSetSpec
    version: str
    prefix: S3Uri
    owner: Mapping[str, str] | None = None
    spec_hash: str | None = None
    online_store: OnlineStore | None = None  # with spec.online.enabled: where the latest values go


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_spec(raw: str) -> FeatureSetSpec:
    data = parse_json_object(raw, ENV_SPEC, "the FeatureSet spec")
    try:
        return FeatureSetSpec.model_validate(data)
    except ValidationError as exc:
        parts = [(".".join(str(p) for p in e["loc"]) or "spec") + ": " + e["msg"] for e in exc.errors()]
        raise InvalidInput("invalid FeatureSet spec: " + "; ".join(parts)) from exc


def load_config(env: Mapping[str, str] | None = None) -> MaterializeConfig:
    env = os.environ if env is None else env
    missing = [n for n in (ENV_FEATURESET, ENV_SPEC, ENV_VERSION, ENV_PREFIX) if not env.get(n)]
    if missing:
        raise InvalidInput(f"missing environment variable(s): {', '.join(missing)}")
    prefix = env_prefix(env, ENV_PREFIX)
    owner, spec_hash = env_owner(env)
    spec = parse_spec(env[ENV_SPEC])
    online = OnlineStore.from_env(env) if spec.online is not None and spec.online.enabled else None
    return MaterializeConfig(env[ENV_FEATURESET], env.get(ENV_FEATURESET_UID) or None,
                             spec, env[ENV_VERSION], prefix, owner, spec_hash, online)


def read_source(store: ArtifactStore | None, spec: FeatureSetSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The source rows and a lineage record ``{builtin|uri, sha256}``."""
    source = spec.source
    if source.builtin is not None:
        data = load_builtin(str(source.builtin))
        frame = pd.concat([data.X, data.y.rename("target")], axis=1)
        return frame, {"builtin": str(source.builtin), "sha256": data.sha256}
    uri = str(source.uri)
    fmt = format_by_name(uri, str(source.format) if source.format else None)
    if fmt is None:
        raise InvalidInput(f"source.format is required: cannot tell parquet from csv by the name {uri!r}")
    if store is None:
        raise InvalidInput("source.uri needs S3 settings")
    try:
        raw = store.read_object(uri)
    except (ValueError, ObjectNotFound) as exc:
        raise InvalidInput(f"source.uri: {exc}") from exc
    return frame_from_bytes(raw, fmt, uri), {"uri": uri, "format": fmt, "sha256": hashlib.sha256(raw).hexdigest()}


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf, index=False, engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for a column it cannot store
        raise InvalidInput(f"cannot store the snapshot as parquet: {type(exc).__name__}: {exc}") from exc
    return buf.getvalue()


def _success(cfg: MaterializeConfig, manifest: Mapping[str, Any], stats: Mapping[str, Any],
             existing: bool) -> dict[str, Any]:
    return {
        "ok": True, "featureSet": cfg.feature_set, "version": cfg.version, "uri": str(cfg.prefix),
        "rows": stats["rows"], "sha256": manifest["files"][DATA_FILE]["sha256"],
        "createdAt": manifest["createdAt"], "existing": existing, "quality": stats["quality"],
    }


def existing_snapshot(cfg: MaterializeConfig, store: ArtifactStore, now: Clock = _utcnow) -> dict[str, Any]:
    """The committed snapshot at the prefix, if this FeatureSet committed it from the same spec; else
    VersionTaken (nothing another object wrote is ever adopted)."""
    try:
        manifest = store.read_manifest(cfg.prefix)
        stats = json.loads(store.fetch_verified(cfg.prefix, STATS_FILE, manifest, max_bytes=STATS_LIMIT))
    except (IntegrityError, ValueError) as exc:
        raise VersionTaken(f"{cfg.prefix} already holds a snapshot that is not a valid FeatureSet snapshot "
                           f"({exc})") from exc
    if cfg.owner is not None:
        if not same_owner(manifest, cfg.owner):
            raise VersionTaken(f"{cfg.prefix} already holds a snapshot committed by "
                               f"{manifest.get('owner') or 'another writer'}")
        if manifest.get("specHash") != cfg.spec_hash:
            raise VersionTaken(f"{cfg.prefix} already holds a snapshot of this FeatureSet built from another spec")
    else:
        transform = json.loads(store.fetch_verified(cfg.prefix, TRANSFORM_FILE, manifest))
        uid, name = transform.get("featureSetUid"), transform.get("featureSet")
        if uid != cfg.feature_set_uid or name != cfg.feature_set:
            raise VersionTaken(f"{cfg.prefix} already holds a snapshot of another FeatureSet named {name} (uid {uid})")
    log.info("%s is already committed by this FeatureSet from the same spec: reporting it (adopted)", cfg.prefix)
    summary = _success(cfg, manifest, stats, existing=True)
    if online_wanted(cfg):
        doc = json.loads(store.fetch_verified(cfg.prefix, TRANSFORM_FILE, manifest))
        data = store.fetch_verified(cfg.prefix, DATA_FILE, manifest)
        frame = frame_from_bytes(data, "parquet", f"{cfg.prefix}{DATA_FILE}")
        summary["online"] = publish_online(cfg, frame, doc["inputColumns"], now)
    return summary


def online_wanted(cfg: MaterializeConfig) -> bool:
    online = cfg.spec.online
    if online is None or not online.enabled:
        return False
    if cfg.online_store is None:
        log.warning("spec.online.enabled but no online store is configured (%s): offline snapshot only",
                    "MLOPS_ONLINE_STORE_URL")
        return False
    return True


def publish_online(cfg: MaterializeConfig, frame: pd.DataFrame, features: list[str], now: Clock) -> dict[str, Any]:
    """Write each entity's newest raw feature values (and event time) to the online store, then the
    descriptor; ``{"entities", "key"}``. Raises OnlineStoreFailed."""
    online, store = cfg.spec.online, cfg.online_store
    assert online is not None and store is not None and cfg.spec.entity_key is not None  # online_wanted, CEL
    namespace = (cfg.owner or {}).get("namespace") or "default"
    ttl = int(parse_duration(str(online.ttl)).total_seconds())
    stamp = now().timestamp()
    descriptor = Descriptor(cfg.version, cfg.spec.entity_key, tuple(features), float(ttl), str(online.on_missing),
                            stamp)
    vectors = latest_vectors(frame, cfg.spec.entity_key, features, cfg.spec.timestamp_column, stamp)
    # Keys outlive the TTL by as much again, so an expired value is reported stale (not unknown) for a while.
    try:
        written = store.publish(namespace, cfg.feature_set, descriptor, vectors, expire_seconds=2 * max(ttl, 1))
    except StoreUnavailable as exc:
        raise OnlineStoreFailed(f"snapshot {cfg.version} is committed, but {exc}") from exc
    log.info("online store: %d entities of %s/%s (snapshot %s, ttl %ds)", written, namespace, cfg.feature_set,
             cfg.version, ttl)
    return {"entities": written, "key": f"{namespace}/{cfg.feature_set}"}


def materialize(cfg: MaterializeConfig, store: ArtifactStore, now: Clock = _utcnow) -> dict[str, Any]:
    """Build and commit one snapshot; return the success summary. Raises InvalidInput (incl.
    QualityCheckFailed), VersionTaken, StorageError or OnlineStoreFailed."""
    spec = cfg.spec
    log.info("materializing FeatureSet %s version %s into %s", cfg.feature_set, cfg.version, cfg.prefix)
    if store.has_manifest(cfg.prefix):  # cheap early exit for a retried Job; write_version re-checks atomically
        return existing_snapshot(cfg, store, now)

    source, lineage = read_source(store, spec)
    where = lineage.get("uri") or f"builtin dataset {lineage['builtin']}"
    log.info("read %d rows x %d columns from %s", len(source), source.shape[1], where)
    snap = build_snapshot(spec, source, where)
    log.info("snapshot has %d feature(s), entity key %r", len(snap.features), snap.entity_key)

    policy = policy_of(spec.quality_policy)
    quality = check_quality(snap.features, snap.frame, now())
    report = quality.report
    log.info("quality checks on %d rows: %s (%d violation(s), policy %s)", report["rows"],
             "passed" if quality.passed else "FAILED", len(report["violations"]), policy)
    for v in report["violations"][:20]:
        log.warning("quality: %s %s: %s", v["feature"], v["check"], v["message"])
    if not quality.passed and policy == "fail":
        first, total = report["violations"][0], report.get("violationsTotal", len(report["violations"]))
        raise QualityCheckFailed(f"{total} quality check(s) failed, e.g. {first['feature']} "
                                 f"{first['check']}: {first['message']}", report)
    frame = snap.frame
    if policy == "impute" and quality.violating:
        frame = blank_violations(frame, quality.violating)
        log.info("policy impute: %d violating value(s) set missing",
                 sum(int(m.sum()) for m in quality.violating.values()))

    doc = fit_transform_doc(spec, frame, feature_set=cfg.feature_set, version=cfg.version,
                            feature_set_uid=cfg.feature_set_uid)
    log.info("fitted transform: %d input column(s) -> %d output column(s)",
             len(doc["inputColumns"]), len(doc["outputColumns"]))
    stats = stats_doc(snap.features, frame, report, source=lineage)
    files = {DATA_FILE: _parquet(frame), TRANSFORM_FILE: to_json(doc), STATS_FILE: to_json(stats)}
    log.info("uploading %s (%d bytes)...", cfg.prefix, sum(len(b) for b in files.values()))
    try:
        manifest = store.write_version(cfg.prefix, files, now=now(), owner=cfg.owner, spec_hash=cfg.spec_hash)
    except AlreadyExistsError:  # another attempt committed in between: report it if it is ours
        return existing_snapshot(cfg, store, now)
    log.info("committed %s: %d rows, data.parquet sha256 %s", cfg.prefix, stats["rows"],
             manifest["files"][DATA_FILE]["sha256"])
    summary = _success(cfg, manifest, stats, existing=False)
    if online_wanted(cfg):
        summary["online"] = publish_online(cfg, frame, list(doc["inputColumns"]), now)
    return summary


def compact(summary: Mapping[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> bytes:
    """``summary`` as JSON within ``limit`` bytes: shrink the quality report first (it is in stats.json)."""
    doc = dict(summary)

    def encoded() -> bytes:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()

    raw = encoded()
    quality = dict(doc.get("quality") or {})
    steps = ("missingFraction", 10, 3, 0)
    for step in steps:
        if len(raw) <= limit or not quality:
            break
        if step == "missingFraction":
            quality.pop("missingFraction", None)
        else:
            total = quality.get("violationsTotal", len(quality.get("violations", [])))
            quality["violations"] = quality.get("violations", [])[:step]
            quality["violationsTotal"] = total
        doc["quality"] = quality
        doc["truncated"] = True
        raw = encoded()
    if len(raw) > limit and "message" in doc:
        doc["message"] = doc["message"][: max(0, len(doc["message"]) - (len(raw) - limit) - 3)] + "..."
        raw = encoded()
    return raw


def failure(reason: str, message: str, exit_code: int, quality: Mapping[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ok": False, "reason": reason, "message": message[:3000], "exitCode": exit_code}
    if quality is not None:
        doc["quality"] = dict(quality)
    return doc


def outcome(exc: BaseException) -> tuple[int, str]:
    """(exit code, reason) of a failure."""
    return classify(exc, ((QualityCheckFailed, EXIT_INVALID_INPUT, "QualityCheckFailed"),
                          (VersionTaken, EXIT_VERSION_TAKEN, "VersionTaken"),
                          (OnlineStoreFailed, EXIT_STORAGE, ONLINE_STORE_UNAVAILABLE)))


def main(argv: list[str] | None = None) -> int:
    return run_job(lambda: materialize(load_config(), ArtifactStore.from_settings()), outcome,
                   lambda reason, message, code, exc: failure(reason, message, code, getattr(exc, "quality", None)),
                   compact)


if __name__ == "__main__":
    sys.exit(main())
