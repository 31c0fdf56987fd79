"""FeatureSet reconciliation: when to build a snapshot, and what a finished materialize Job means (pure).

::

    (no Job) ──trigger──▶ version vN recorded in status ──next pass──▶ Job fs-<name>-vN created
        ──Complete──▶ manifest + stats.json read from S3 ──▶ vN appended, latestVersion = vN, Ready
        ──Failed────▶ Materialized=False (reason from the materializer), last good snapshot kept

Triggers, checked only while no Job runs (so at most one Job per FeatureSet):
``Created`` (no snapshot yet), ``SpecChanged`` (the newest snapshot was built from other data-shaping fields:
a schedule, ``online`` or ``historyLimit`` edit rebuilds nothing),
``Schedule`` (``spec.materialize.schedule`` fell due since the last start; one run however many ticks
were missed) and ``Request`` (a new value of the ``mlops.dev/materialize`` annotation).
A generation whose materialization failed is not retried by itself — the same input would fail again;
a spec edit, the schedule or a request starts the next attempt. Snapshot numbers are never reused:
``lastVersionNumber`` only grows, and a number whose S3 prefix is taken (a FeatureSet deleted and
re-created under the same name) is skipped, not overwritten.

The version is recorded in status before its Job is created (the name is a function of the version),
so a crash between the two steps finds the same Job on the next pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from croniter import croniter

from mlops_operator.api.v1alpha1.common import format_time, get_condition
from mlops_operator.api.v1alpha1.featureset import FeatureSet
from mlops_operator.api.v1alpha1.pod import merge_pod_overrides
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.builders.materialize import (
    MaterializeJobInput,
    build_materialize_job,
    materialize_job_name,
    snapshot_prefix,
)
from mlops_operator.logic.jobs import JobObservation, JobSettings, JobState, termination_text
from mlops_operator.logic.status import JobOutcome, Pass

PENDING, MATERIALIZING, READY, FAILED = "Pending", "Materializing", "Ready", "Failed"
REQUEST_ANNOTATION = "mlops.dev/materialize"
CREATED, SPEC_CHANGED, SCHEDULE, REQUEST = "Created", "SpecChanged", "Schedule", "Request"
VERSION_TAKEN = "VersionTaken"
MATERIALIZED, QUALITY_WARNING, ONLINE = "Materialized", "QualityWarning", "OnlineServing"
ONLINE_UNAVAILABLE = "OnlineStoreUnavailable"  # the materializer's reason: committed, but not online
MAX_VIOLATIONS = 20  # status stays readable; stats.json in S3 has the full report


@dataclass(frozen=True)
class Committed:
    """What S3 holds for a finished snapshot (read by the handler); ``problem`` when it could not be read."""

    uri: str
    rows: int | None = None
    sha256: str | None = None
    created_at: str | None = None
    quality: Mapping[str, Any] | None = None
    problem: str = ""        # "" = committed and read; else why not (reason)
    message: str = ""


@dataclass(frozen=True)
class Needs:
    job: bool = False        # the active Job, its pods' termination message
    bucket: bool = False     # the S3 secret (to name the prefix of a Job about to be created)
    committed: bool = False  # read the finished snapshot from S3


@dataclass(frozen=True)
class World:
    job: JobObservation | None = None
    termination: Mapping[str, Any] | None = None  # the materializer's JSON summary, if its pod left one
    bucket: str | None = None
    storage_problem: str = ""
    committed: Committed | None = None


def needs(status: Mapping[str, Any]) -> Needs:
    if not status.get("activeVersion"):
        return Needs()
    return Needs(job=True, bucket=True, committed=True)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time ``schedule`` fires strictly after ``after`` (UTC)."""
    return croniter(schedule, after.astimezone(timezone.utc)).get_next(datetime)


class _Pass(Pass):
    def __init__(self, fs: FeatureSet, status: Mapping[str, Any], now: datetime, online_store_url: str = "") -> None:
        super().__init__(fs.metadata, status, now)
        self.fs = fs
        self.online_store_url = online_store_url

    def settle_phase(self) -> None:
        """Phase and Ready from what status now holds; a recovered Retrying is closed."""
        latest = self.status.get("latestVersion")
        last = get_condition(self.status.get("conditions"), MATERIALIZED) or {}
        if self.status.get("activeVersion"):
            phase = MATERIALIZING
        elif latest:
            phase = READY
        elif last.get("status") == "False":
            phase = FAILED
        else:
            phase = PENDING
        self.status["phase"] = phase
        if latest:
            snap = _snapshot(self.status, latest) or {}
            self.condition("Ready", "True", "SnapshotAvailable",
                           f"snapshot {latest} ({snap.get('rows')} rows) at {snap.get('uri')}")
        elif phase == FAILED:
            self.condition("Ready", "False", last.get("reason") or "MaterializeFailed", last.get("message") or "")
        else:
            self.condition("Ready", "False", phase, "no snapshot yet" + (
                f"; building {self.status['activeVersion']}" if phase == MATERIALIZING else ""))
        self.recovered()
        online = self.fs.spec.online
        if online is not None and online.enabled:
            self.settle_online(str(online.ttl))
        elif get_condition(self.status.get("conditions"), ONLINE):
            self.condition(ONLINE, "False", "Disabled", "spec.online.enabled is false")

    def settle_online(self, ttl: str) -> None:
        """OnlineServing from what the materializer reported (``status.online``) and the operator's store."""
        published = self.status.get("online") or {}
        if not self.online_store_url:
            self.condition(ONLINE, "False", "NotConfigured", "the operator has no online store (chart value "
                           "onlineStore.url); snapshots are offline (S3) only")
        elif published.get("version"):
            self.condition(ONLINE, "True", "Published",
                           f"snapshot {published['version']}: the latest values of {published.get('entities')} "
                           f"entities are online (ttl {ttl}, checked on read)")
        elif (get_condition(self.status.get("conditions"), ONLINE) or {}).get("reason") != ONLINE_UNAVAILABLE:
            self.condition(ONLINE, "False", "NotPublished", "no snapshot has been written to the online store yet")


def _snapshot(status: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    return next((v for v in status.get("versions") or [] if v.get("version") == version), None)


def _version_number(version: str | None) -> int:
    return int(version[1:]) if version and version[:1] == "v" and version[1:].isdigit() else 0


def _last_number(status: Mapping[str, Any]) -> int:
    known = [_version_number(v.get("version")) for v in status.get("versions") or []]
    return max([status.get("lastVersionNumber") or 0, _version_number(status.get("activeVersion")), *known])


NOT_DATA_FIELDS = frozenset({"materialize", "online", "historyLimit"})


def spec_hash(fs: FeatureSet) -> str:
    """sha256 of the spec fields that shape a snapshot: a schedule or history edit needs no rebuild."""
    spec = fs.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    shaping = {k: v for k, v in spec.items() if k not in NOT_DATA_FIELDS}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def trigger(fs: FeatureSet, status: Mapping[str, Any], now: datetime) -> tuple[str, str] | None:
    """Why a new snapshot should be built now (trigger, detail), or None."""
    generation = fs.metadata.get("generation")
    request = (fs.metadata.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if request and request != status.get("handledRequest"):
        return REQUEST, f"{REQUEST_ANNOTATION}={request}"
    last = get_condition(status.get("conditions"), MATERIALIZED) or {}
    failed_here = last.get("status") == "False" and last.get("observedGeneration") == generation
    versions = status.get("versions") or []
    if not failed_here:
        if not versions:
            return CREATED, "no snapshot yet"
        newest = versions[-1]
        built_from = newest.get("specHash")
        if built_from is not None and built_from != spec_hash(fs):
            return SPEC_CHANGED, f"the spec (generation {generation}) differs from the one {newest.get('version')} was built from"
        if built_from is None and newest.get("generation") is not None and newest.get("generation") != generation:
            return SPEC_CHANGED, f"spec generation {generation} differs from {newest.get('version')}'s {newest.get('generation')}"
    schedule = fs.spec.materialize.schedule if fs.spec.materialize else None
    if schedule:
        base = _parse_time(status.get("lastStartedAt")) or _parse_time(fs.metadata.get("creationTimestamp")) or now
        due = next_run(schedule, base)
        if due <= now:
            return SCHEDULE, f"schedule {schedule!r} was due at {format_time(due)}"
    return None


def _start(p: _Pass, why: tuple[str, str]) -> None:
    """Record the next version (its Job is created on the next pass, once this is in status)."""
    kind, detail = why
    number = _last_number(p.status) + 1
    version = f"v{number}"
    name = p.fs.metadata["name"]
    if kind == REQUEST:
        p.status["handledRequest"] = (p.fs.metadata.get("annotations") or {}).get(REQUEST_ANNOTATION)
    p.status.update(activeVersion=version, activeJob=materialize_job_name(name, version), activeTrigger=kind,
                    activeGeneration=p.generation, activeSpecHash=spec_hash(p.fs), lastVersionNumber=number,
                    lastStartedAt=format_time(p.now))
    p.event("Normal", "Materializing", f"building snapshot {version} ({kind}: {detail})")


def _clear_active(p: _Pass) -> None:
    for key in ("activeVersion", "activeJob", "activeTrigger", "activeGeneration", "activeSpecHash"):
        p.status.pop(key, None)


def build_job(fs: FeatureSet, status: Mapping[str, Any], bucket: str, cfg: JobSettings) -> dict[str, Any]:
    version = status["activeVersion"]
    meta = fs.metadata
    owner = {"apiVersion": fs.api_version, "kind": "FeatureSet", "metadata": meta}
    spec = fs.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return build_materialize_job(MaterializeJobInput(
        owner=owner, spec=spec, version=version, prefix=snapshot_prefix(bucket, meta["namespace"], meta["name"], version),
        image=cfg.image, s3_secret=cfg.s3_secret, spec_hash=status.get("activeSpecHash") or spec_hash(fs),
        active_deadline_seconds=int(parse_duration(cfg.default_timeout).total_seconds()),
        backoff_limit=cfg.backoff_limit, image_pull_policy=cfg.image_pull_policy,
        ttl_seconds_after_finished=cfg.ttl_seconds_after_finished,
        online_store_url=cfg.online_store_url, online_store_secret=cfg.online_store_secret,
        pod=merge_pod_overrides(cfg.pod_defaults, fs.spec.materialize.pod if fs.spec.materialize else None)))


def _bounded_quality(quality: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not quality:
        return None
    q = {k: v for k, v in quality.items() if k in ("passed", "checkedAt", "rows", "violations", "missingFraction")}
    if isinstance(q.get("violations"), list):
        q["violations"] = [{"feature": str(v.get("feature", "")), "check": str(v.get("check", "")),
                            "message": str(v.get("message", ""))[:512]}
                           for v in q["violations"][:MAX_VIOLATIONS] if isinstance(v, Mapping)]
    return q


def _record(p: _Pass, committed: Committed) -> None:
    version, trigger_kind = p.status["activeVersion"], p.status.get("activeTrigger")
    quality = _bounded_quality(committed.quality)
    passed = None if quality is None else quality.get("passed")
    ref = {"version": version, "uri": committed.uri, "rows": committed.rows, "createdAt": committed.created_at,
           "sha256": committed.sha256, "generation": p.status.get("activeGeneration"),
           "specHash": p.status.get("activeSpecHash"), "trigger": trigger_kind,
           "request": p.status.get("handledRequest") if trigger_kind == REQUEST else None,
           "qualityPassed": passed}
    versions = [v for v in p.status.get("versions") or [] if v.get("version") != version]
    versions.append({k: v for k, v in ref.items() if v is not None})
    p.status["versions"] = versions[-p.fs.spec.history_limit:]
    p.status.update(latestVersion=version, lastMaterializedAt=format_time(p.now))
    if quality is not None:
        p.status["quality"] = quality
    generation = p.status.get("activeGeneration")
    _clear_active(p)
    message = f"snapshot {version}: {committed.rows} rows at {committed.uri}"
    p.condition(MATERIALIZED, "True", MATERIALIZED, message, generation)
    p.event("Normal", MATERIALIZED, message)
    if passed is False:
        found = "; ".join(f"{v['feature']} {v['check']}: {v['message']}" for v in quality.get("violations") or [])
        text = f"snapshot {version} published with failed quality checks (policy {_policy(p.fs)}): {found}"[:1024]
        p.condition(QUALITY_WARNING, "True", "QualityChecksFailed", text, generation)
        p.event("Warning", QUALITY_WARNING, text)
    else:
        p.condition(QUALITY_WARNING, "False", "QualityChecksPassed", f"snapshot {version} passed every check",
                    generation)


def _record_online(p: _Pass, summary: Mapping[str, Any] | None) -> None:
    """``status.online`` from the materializer's summary, when it wrote the snapshot's values online."""
    online = (summary or {}).get("online") if (summary or {}).get("ok") else None
    if not isinstance(online, Mapping):
        return
    p.status["online"] = {"version": p.status["activeVersion"], "entities": online.get("entities"),
                          "key": online.get("key"), "publishedAt": format_time(p.now)}


def _policy(fs: FeatureSet) -> str:
    return str(fs.spec.quality_policy.on_violation) if fs.spec.quality_policy else "fail"


def _fail(p: _Pass, job: JobObservation, summary: Mapping[str, Any] | None) -> None:
    version, generation = p.status["activeVersion"], p.status.get("activeGeneration")
    reason = str((summary or {}).get("reason") or job.reason or "MaterializeFailed")
    message = termination_text(json.dumps(summary)) if summary else (job.message or "the materialize Job failed")
    quality = _bounded_quality((summary or {}).get("quality"))
    if quality is not None:
        p.status["quality"] = quality
    _clear_active(p)
    kept = p.status.get("latestVersion")
    text = f"snapshot {version} failed: {message}" + (f"; {kept} is still the latest snapshot" if kept else "")
    p.condition(MATERIALIZED, "False", reason, text[:1024], generation)
    p.event("Warning", reason, text[:1024])


def decide(fs: FeatureSet, status: Mapping[str, Any], world: World, cfg: JobSettings, now: datetime) -> JobOutcome:
    """The next step for ``fs``; see the module docstring."""
    p = _Pass(fs, status, now, cfg.online_store_url)
    p.status["observedGeneration"] = p.generation
    schedule = fs.spec.materialize.schedule if fs.spec.materialize else None
    if p.status.get("activeVersion"):
        job = world.job
        if job is None or job.state == JobState.MISSING:
            if world.bucket is None:
                return p.retrying("StorageNotConfigured", world.storage_problem or "no S3 bucket")
            p.settle_phase()
            return p.done(job=build_job(fs, p.status, world.bucket, cfg))
        if job.state == JobState.ACTIVE:
            p.settle_phase()
            return p.done()
        if job.state == JobState.SUCCEEDED:
            committed = world.committed
            if committed is None or committed.problem:
                reason = committed.problem if committed else "StorageUnavailable"
                return p.retrying(reason, committed.message if committed else world.storage_problem)
            _record_online(p, world.termination)
            _record(p, committed)
        else:
            summary = world.termination
            if (summary or {}).get("reason") == VERSION_TAKEN:
                kind = p.status.get("activeTrigger") or CREATED
                taken = p.status["activeVersion"]
                _clear_active(p)
                _start(p, (kind, f"{taken} is taken in S3 by an earlier FeatureSet of this name"))
                p.settle_phase()
                return p.done()
            if (summary or {}).get("reason") == ONLINE_UNAVAILABLE:
                p.status.pop("online", None)
                p.condition(ONLINE, "False", ONLINE_UNAVAILABLE, str(summary.get("message") or "")[:1024])
            _fail(p, job, summary)
    else:
        why = trigger(fs, p.status, now)
        if why is not None:
            _start(p, why)
    if schedule:
        base = _parse_time(p.status.get("lastStartedAt")) or _parse_time(fs.metadata.get("creationTimestamp")) or now
        p.status["nextScheduledAt"] = format_time(next_run(schedule, base))
    else:
        p.status.pop("nextScheduledAt", None)
    p.settle_phase()
    return p.done()
