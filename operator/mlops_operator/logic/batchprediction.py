"""BatchPrediction reconciliation: when a run starts, and what a finished scoring Job means (pure).

::

    (no Job) ──trigger──▶ run id recorded in status ──next pass──▶ Job bp-<name>-<run> created
        ──Complete──▶ manifest + run.json read from S3 ──▶ run Succeeded, lastOutputUri, rowsScored, Ready
        ──Failed────▶ run Failed (reason from the scorer), Ready=False, a Warning event

Triggers, checked only while no Job runs (one run at a time per BatchPrediction):

* ``Request``: a new value of the ``mlops.dev/run`` annotation; run id ``r-<value>`` (sanitized);
* ``Schedule``: ``spec.schedule`` fell due since the last scheduled run (one run however many slots were
  missed); run id ``t-<slot as YYYYMMDD-HHMM>``;
* ``SpecChanged``: without a schedule, the spec runs once, and again whenever a field that shapes the output
  changes (not ``historyLimit``, ``timeout`` or ``resources``); run id ``g<generation>-<spec hash>``.

A run id names the output prefix, so the same trigger always means the same prefix: a retried Job finds
its own committed output (the scorer reports it unchanged), and nothing committed is ever written again.
A trigger met while a reference is missing or the ModelVersion is not Ready starts nothing: ``InvalidSpec``
and ``Ready=False`` say why (with an event), and the trigger fires once the reference is usable.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.batchprediction import BatchPrediction
from mlops_operator.api.v1alpha1.common import format_time, get_condition
from mlops_operator.api.v1alpha1.featureset import ROW_KEY
from mlops_operator.api.v1alpha1.pod import merge_pod_overrides
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.builders.batchprediction import BatchJobInput, batch_job_name, build_batch_job
from mlops_operator.builders.layout import predictions_prefix
from mlops_operator.builders.names import child_name
from mlops_operator.logic.featureset import next_run
from mlops_operator.logic.jobs import JobObservation, JobSettings, JobState, termination_text
from mlops_operator.logic.references import Problem, Reference, apply_invalid_spec, snapshot
from mlops_operator.logic.retrain_triggers import latest_slot
from mlops_operator.logic.status import JobOutcome, Pass
from mlops_operator.logic.analysis import parse_time

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
REQUEST_ANNOTATION = "mlops.dev/run"
REQUEST, SCHEDULE, SPEC_CHANGED = "Request", "Schedule", "SpecChanged"
READY = "Ready"
NOT_DATA_FIELDS = frozenset({"schedule", "historyLimit", "timeout", "resources", "pod"})
_RUN_CHARS = re.compile(r"[^a-z0-9-]+")

@dataclass(frozen=True)
class Committed:
    """What S3 holds for a finished run (read by the handler); ``problem`` when it could not be read."""

    uri: str
    rows: int | None = None
    files: int | None = None
    problem: str = ""
    message: str = ""


@dataclass(frozen=True)
class World:
    problems: tuple[Problem, ...] = ()
    model: Mapping[str, Any] | None = None        # the ModelVersion body
    feature_set: Mapping[str, Any] | None = None  # the FeatureSet body (input.featureSet)
    bucket: str | None = None
    storage_problem: str = ""
    job: JobObservation | None = None
    termination: Mapping[str, Any] | None = None
    committed: Committed | None = None
    chunks_written: int | None = None              # parts under the run's prefix while its Job runs


def references(bp: BatchPrediction) -> list[Reference]:
    refs = [Reference("ModelVersion", bp.spec.model_version, "spec.modelVersion")]
    fs = bp.spec.input.feature_set
    if fs is not None:
        refs.append(Reference("FeatureSet", fs.name, "spec.input.featureSet.name", version=fs.version))
    return refs


def spec_hash(bp: BatchPrediction) -> str:
    """sha256 of the spec fields that shape a run's output (not its schedule, history or resources)."""
    spec = bp.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    shaping = {k: v for k, v in spec.items() if k not in NOT_DATA_FIELDS}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_run_id(value: str) -> str:
    """``r-<value>`` as a DNS label (lower case, ``[a-z0-9-]``), hashed when it had to change or is long.

    >>> request_run_id("2026-01-05")
    'r-2026-01-05'
    >>> request_run_id("Backfill Jan")[:15]
    'r-backfill-jan-'
    """
    clean = _RUN_CHARS.sub("-", value.lower()).strip("-") or "x"
    if clean != value:
        clean = f"{clean}-{hashlib.sha256(value.encode()).hexdigest()[:6]}"
    return child_name("r", clean, limit=40)


def slot_run_id(slot: datetime) -> str:
    """``t-<YYYYMMDD-HHMM>`` of a schedule slot (UTC).

    >>> from datetime import datetime, timezone
    >>> slot_run_id(datetime(2026, 1, 5, 2, 0, tzinfo=timezone.utc))
    't-20260105-0200'
    """
    return "t-" + slot.strftime("%Y%m%d-%H%M")


def model_problem(model: Mapping[str, Any] | None, name: str) -> Problem | None:
    """Why the ModelVersion cannot score yet (it exists: ``check_reference`` covers a missing one)."""
    status = (model or {}).get("status") or {}
    artifact = status.get("artifact") or {}
    if status.get("phase") != "Ready" or not artifact.get("uri") or not artifact.get("sha256"):
        return Problem("ModelVersionNotReady", f"spec.modelVersion: ModelVersion {name!r} is "
                                               f"{status.get('phase') or 'Pending'}, not Ready")
    return None


def resolve_input(bp: BatchPrediction, feature_set: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None,
                                                                                     Problem | None]:
    """The input the Job reads: ``{uri, format?}`` or ``{snapshotUri, featureSet, version, entityKey?}``."""
    inp = bp.spec.input
    if inp.uri is not None:
        return {k: v for k, v in {"uri": inp.uri, "format": inp.format}.items() if v is not None}, None
    ref = inp.feature_set
    snap = snapshot(feature_set or {}, ref.version) if feature_set is not None else None
    if snap is None or not snap.get("uri"):
        return None, Problem("SnapshotNotReady", f"spec.input.featureSet: FeatureSet {ref.name!r} has no Ready "
                                                 f"snapshot {ref.version or '(latest)'} yet")
    resolved = {"snapshotUri": snap["uri"], "featureSet": ref.name, "version": snap.get("version")}
    resolved["entityKey"] = ((feature_set or {}).get("spec") or {}).get("entityKey") or ROW_KEY
    return resolved, None


def describe_input(resolved: Mapping[str, Any]) -> str:
    if "snapshotUri" in resolved:
        return f"featureset:{resolved['featureSet']}/{resolved['version']}"
    return str(resolved["uri"])


class _Pass(Pass):
    def __init__(self, bp: BatchPrediction, status: Mapping[str, Any], now: datetime) -> None:
        super().__init__(bp.metadata, status, now)
        self.bp = bp


def _schedule_base(bp: BatchPrediction, status: Mapping[str, Any], now: datetime) -> datetime:
    """The time the next schedule slot is counted from: the last scheduled run's slot, else the object's creation."""
    return parse_time(status.get("lastScheduledAt")) or parse_time(bp.metadata.get("creationTimestamp")) or now


def trigger(bp: BatchPrediction, status: dict[str, Any], now: datetime) -> tuple[str, str, str, dict] | None:
    """(trigger, run id, detail, status fields to record when the run starts), or None."""
    request = (bp.metadata.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if request and request != status.get("handledRequest"):
        return REQUEST, request_run_id(request), f"{REQUEST_ANNOTATION}={request}", {"handledRequest": request}
    cron = bp.spec.schedule
    if cron:
        if next_run(cron, _schedule_base(bp, status, now)) <= now:
            slot = latest_slot(cron, now)
            return (SCHEDULE, slot_run_id(slot), f"schedule {cron!r} slot {format_time(slot)}",
                    {"lastScheduledAt": format_time(slot)})
        return None
    generation, shaping = bp.metadata.get("generation"), spec_hash(bp)
    if status.get("handledSpecHash") != shaping:
        return (SPEC_CHANGED, f"g{generation}-{shaping[:8]}", f"spec generation {generation}",
                {"handledGeneration": generation, "handledSpecHash": shaping})
    return None


def _clear_active(p: _Pass) -> None:
    for key in ("activeRun", "activeJob", "activeTrigger", "activeInput", "activeModelUri", "activeModelSha256",
                "activeStartedAt", "progress"):
        p.status.pop(key, None)


def _start(p: _Pass, why: tuple[str, str, str, dict], world: World) -> None:
    kind, run, detail, record = why
    resolved, _ = resolve_input(p.bp, world.feature_set)
    artifact = ((world.model or {}).get("status") or {}).get("artifact") or {}
    p.status.update(record)
    p.status.update(activeRun=run, activeJob=batch_job_name(p.bp.metadata["name"], run), activeTrigger=kind,
                    activeInput=json.dumps(resolved, sort_keys=True, separators=(",", ":")),
                    activeModelUri=artifact["uri"], activeModelSha256=artifact["sha256"],
                    activeStartedAt=format_time(p.now))
    p.event("Normal", "Scoring", f"run {run} scores {describe_input(resolved or {})} with ModelVersion "
                                 f"{p.bp.spec.model_version} ({kind}: {detail})")


def build_job(bp: BatchPrediction, status: Mapping[str, Any], bucket: str, cfg: JobSettings) -> dict[str, Any]:
    meta = bp.metadata
    run = status["activeRun"]
    resolved = json.loads(status["activeInput"])
    passthrough = tuple(bp.spec.passthrough or ([resolved["entityKey"]] if resolved.get("entityKey") else []))
    resources = bp.spec.resources.to_dict() if bp.spec.resources else {}
    timeout = bp.spec.timeout or cfg.default_timeout
    return build_batch_job(BatchJobInput(
        owner={"apiVersion": bp.api_version, "kind": "BatchPrediction", "metadata": meta}, run=run,
        output_prefix=predictions_prefix(bucket, meta["namespace"], meta["name"], run),
        model_uri=status["activeModelUri"], model_sha256=status["activeModelSha256"],
        model_version=bp.spec.model_version, input=resolved, passthrough=passthrough,
        chunk_rows=bp.spec.chunk_rows, image=cfg.image, s3_secret=cfg.s3_secret, spec_hash=spec_hash(bp),
        active_deadline_seconds=int(parse_duration(timeout).total_seconds()), backoff_limit=cfg.backoff_limit,
        image_pull_policy=cfg.image_pull_policy, resources=resources,
        ttl_seconds_after_finished=cfg.ttl_seconds_after_finished, pod=merge_pod_overrides(cfg.pod_defaults, bp.spec.pod)))


def _record(p: _Pass, result: str, *, reason: str = "", message: str = "", committed: Committed | None = None) -> None:
    status = p.status
    entry = {"run": status["activeRun"], "trigger": status.get("activeTrigger"), "result": result,
             "reason": reason or None, "message": message[:1024] or None,
             "outputUri": committed.uri if committed else None, "rows": committed.rows if committed else None,
             "files": committed.files if committed else None, "modelVersion": p.bp.spec.model_version,
             "input": describe_input(json.loads(status.get("activeInput") or "{}") or {"uri": ""}),
             "startedAt": status.get("activeStartedAt"), "finishedAt": format_time(p.now)}
    runs = [r for r in status.get("runs") or [] if r.get("run") != entry["run"]]
    runs.append({k: v for k, v in entry.items() if v is not None})
    status["runs"] = runs[-p.bp.spec.history_limit:]
    if committed is not None:
        status.update(lastOutputUri=committed.uri, rowsScored=committed.rows)
    _clear_active(p)


def _finish(p: _Pass, world: World, cfg: JobSettings) -> JobOutcome | None:
    """The active run's Job finished or vanished: record it (or retry reading S3). None = keep going."""
    job, run = world.job, p.status["activeRun"]
    if job is None or job.state == JobState.MISSING:
        if world.bucket is None:
            return p.retrying("StorageNotConfigured", world.storage_problem or "no S3 bucket")
        return p.done(job=build_job(p.bp, p.status, world.bucket, cfg))
    if job.state == JobState.ACTIVE:
        if world.chunks_written is not None:
            p.status["progress"] = {"run": run, "chunksWritten": world.chunks_written,
                                    "rowsAtMost": world.chunks_written * p.bp.spec.chunk_rows}
        return None
    if job.state == JobState.SUCCEEDED:
        committed = world.committed
        if committed is None or committed.problem:
            return p.retrying(committed.problem if committed else "StorageUnavailable",
                              committed.message if committed else world.storage_problem)
        _record(p, SUCCEEDED, message=f"{committed.rows} rows in {committed.files} part(s)", committed=committed)
        p.event("Normal", "Scored", f"run {run}: {committed.rows} rows scored into {committed.uri}")
        return None
    summary = world.termination or {}
    reason = str(summary.get("reason") or job.reason or "ScoringFailed")
    message = termination_text(json.dumps(summary)) if summary else (job.message or "the scoring Job failed")
    _record(p, FAILED, reason=reason, message=message)
    p.event("Warning", reason, f"run {run} failed: {message}"[:1024])
    return None


def _settle(p: _Pass, problems: list[Problem]) -> None:
    """Phase and Ready from what status now holds."""
    runs = p.status.get("runs") or []
    last = runs[-1] if runs else None
    if p.status.get("activeRun"):
        phase = RUNNING
    elif last is not None:
        phase = SUCCEEDED if last.get("result") == SUCCEEDED else FAILED
    else:
        phase = PENDING
    p.status["phase"] = phase
    if problems and not p.status.get("activeRun"):
        p.condition(READY, "False", problems[0].reason, "; ".join(x.message for x in problems))
    elif last is not None and last.get("result") == SUCCEEDED:
        p.condition(READY, "True", "RunSucceeded", f"run {last['run']}: {last.get('rows')} rows at {last.get('outputUri')}")
    elif last is not None:
        p.condition(READY, "False", last.get("reason") or "ScoringFailed", f"run {last['run']} failed: "
                    f"{last.get('message') or ''}"[:1024])
    else:
        what = f"run {p.status['activeRun']} is scoring" if phase == RUNNING else "no run yet"
        p.condition(READY, "False", phase, what)
    p.recovered()


def decide(bp: BatchPrediction, status: Mapping[str, Any], world: World, cfg: JobSettings,
           now: datetime) -> JobOutcome:
    """The next step for ``bp``; see the module docstring."""
    p = _Pass(bp, status, now)
    p.status["observedGeneration"] = p.generation
    p.status["conditions"], events = apply_invalid_spec(p.status.get("conditions"), list(world.problems),
                                                         generation=p.generation, now=now)
    p.events.extend(events)
    problems = list(world.problems)
    if not problems:  # every reference exists: is it usable yet?
        found = model_problem(world.model, bp.spec.model_version)
        _, missing_input = resolve_input(bp, world.feature_set)
        waiting = [x for x in (found, missing_input) if x is not None]
        before = get_condition(p.status.get("conditions"), READY) or {}
        if waiting and before.get("reason") != waiting[0].reason:
            p.event("Warning", waiting[0].reason, waiting[0].message)
        problems = waiting
    if p.status.get("activeRun"):
        early = _finish(p, world, cfg)
        if early is not None:
            if early.job is not None:
                _settle(p, problems)
            return early
    if not p.status.get("activeRun") and not problems:
        why = trigger(bp, p.status, now)
        if why is not None:
            _start(p, why, world)
    if bp.spec.schedule:
        p.status["nextScheduledAt"] = format_time(next_run(bp.spec.schedule, _schedule_base(bp, p.status, now)))
    else:
        p.status.pop("nextScheduledAt", None)
    _settle(p, problems)
    return p.done()
