"""ModelVersion reconciliation as ordered steps, one change per pass (pure).

::

    Pending ──refs ok, Job created──▶ Training ──Job Complete──▶ Validating ──artifact verified──▶
        (artifact: registered) ─────────────────────────────────▶ Validating      ──gates──▶ Ready | Rejected
    Training ──Job Failed──▶ Failed (reason from the trainer's exit code / termination message)

``decide`` runs the steps in order and returns at the first one that changes something or must wait.
Validation bookkeeping (observedGeneration, the ``InvalidSpec`` verdict) is folded into whatever step
runs, because it acts on nothing outside status. Everything the steps need from the world is in
``World``, gathered by the handler according to ``needs`` — so each phase reads only what it uses
(no S3 traffic while a Job runs, no Job reads once the artifact is verified).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import Condition, ModelStage, ModelVersionPhase, get_condition, plain
from mlops_operator.api.v1alpha1.modelversion import (
    ArtifactStatus,
    CompiledStatus,
    GateResult,
    Lineage,
    ModelVersion,
    ModelVersionStatus,
    PrimaryMetric,
    Signature,
)
from mlops_operator.api.v1alpha1.pod import merge_pod_overrides
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.builders.job import TrainingJobInput, build_training_job, training_job_name
from mlops_operator.builders.retrain import TRAINED_BY_LABELS
from mlops_operator.logic.compiled import CONDITION as COMPILED, compiled_condition, compiled_status
from mlops_operator.logic.gates import Baseline, evaluate_gates
from mlops_operator.logic.jobs import JobObservation, JobSettings, JobState
from mlops_operator.logic.references import Problem, Reference, apply_invalid_spec, training_references
from mlops_operator.logic.status import JobOutcome, Pass

PENDING, TRAINING, VALIDATING = "Pending", "Training", "Validating"
READY, REJECTED, FAILED = "Ready", "Rejected", "Failed"
TERMINAL = frozenset({READY, REJECTED, FAILED})
TRAINER_KINDS = frozenset({"RetrainPolicy", "HyperparameterSearch"})
ADOPTED = "Adopted"
# What is copied from metrics.json into status is bounded: the object must stay far below etcd's limit.
MAX_METRICS = 32                 # ModelVersionStatus.metrics maxProperties
MAX_PARAMETERS_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
MAX_DROP_CAUSES = 8              # status.lineage.labels.dropped: the causes kept


@dataclass(frozen=True)
class ArtifactCheck:
    """What reading and verifying the artifact prefix found (filled in by the handler)."""

    prefix: str
    problem: str | None = None          # None = verified; else integrity | unavailable | denied | storage
    reason: str = ""
    message: str = ""
    model_sha256: str | None = None
    model_size: int | None = None
    format: str | None = None
    committed_at: str | None = None     # manifest createdAt
    report: Mapping[str, Any] | None = None  # metrics.json (None when absent or too large to copy)
    owner: Mapping[str, str] | None = None   # the manifest's owner {namespace, kind, name, uid}
    spec_hash: str | None = None             # the manifest's specHash


@dataclass(frozen=True)
class Needs:
    """What the handler must observe for this pass."""

    references: list[Reference] = field(default_factory=list)
    storage: bool = False       # S3 secret -> artifact prefix
    committed: bool = False     # whether a version is already committed at the prefix (HEAD of its manifest)
    job: bool = False           # the training Job and its pods
    artifact: bool = False      # verify the artifact prefix
    baseline: str | None = None  # ModelDeployment whose stable version is the bar
    report: bool = False        # re-read the verified metrics.json (its same-rows score of the stable version)


@dataclass(frozen=True)
class World:
    """The observations ``decide`` works on (only what ``needs`` asked for is filled in)."""

    problems: list[Problem] = field(default_factory=list)
    snapshot: Mapping[str, Any] | None = None   # resolved FeatureSet snapshot {version, uri}
    artifact_prefix: str | None = None          # None: the S3 secret is missing
    committed: bool = False                     # a manifest exists at the prefix (asked at Pending)
    storage_problem: str = ""                   # why artifact_prefix is None
    job: JobObservation | None = None
    artifact: ArtifactCheck | None = None
    baseline: Baseline | None = None
    report: ArtifactCheck | None = None         # metrics.json re-read at the gate (``report`` None: no file)


# ------------------------------------------------------------------------------------------- needs


def needs(mv: ModelVersion) -> Needs:
    phase = mv.status.phase or PENDING
    spec = mv.spec
    if phase in TERMINAL:
        return Needs()
    mbs = spec.gates.must_beat_stable if spec.gates else None
    bar = mbs.model_deployment if mbs else None
    gate_refs = training_references(None, spec.gates)
    if phase == PENDING:
        training = spec.training is not None
        # The stable version is resolved BEFORE the Job exists: the Job scores it on its own test rows.
        return Needs(references=training_references(spec.training, spec.gates), storage=training, committed=training,
                     baseline=bar if training else None)
    if phase == TRAINING:  # a Job deleted mid-run is created again, with the stable version to score
        return Needs(storage=True, job=True, baseline=bar)
    verified = mv.status.artifact is not None and mv.status.artifact.uri is not None
    # Validating: the S3 secret gives both the training prefix and the credentials to read any artifact.
    # The gate re-reads the verified report for the stable version's score on the same rows.
    return Needs(references=gate_refs, storage=not verified or bool(mbs), artifact=not verified,
                 baseline=bar if verified else None, report=bool(verified and mbs))


# --------------------------------------------------------------------------------------- helpers


class _Pass(Pass):
    """One pass over a ModelVersion on its typed status ``st``, serialized once (by ``done``)."""

    def __init__(self, mv: ModelVersion, status: Mapping[str, Any], now: datetime) -> None:
        super().__init__(mv.metadata, {}, now)
        self.mv = mv
        self.st = ModelVersionStatus.model_validate(plain(status))

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in self.st.conditions]

    @conditions.setter
    def conditions(self, value: list[dict[str, Any]]) -> None:
        self.st.conditions = [Condition.model_validate(c) for c in value]

    def done(self, **actions: Any) -> JobOutcome:
        self.status = self.st.model_dump(mode="json", by_alias=True, exclude_none=True)
        return super().done(**actions)

    def phase(self, phase: str, reason: str, message: str, event: str | None = None) -> None:
        """Enter ``phase``; the Ready condition mirrors it, a recovered Retrying is closed.

        ``event`` is the reason of the Event announcing the transition (Warning for Rejected/Failed).
        """
        self.st.phase = ModelVersionPhase(phase)
        self.condition("Ready", "True" if phase == READY else "False", reason, message)
        self.recovered()
        if event:
            self.event("Warning" if phase in (REJECTED, FAILED) else "Normal", event, message)

    def lineage(self, **values: Any) -> None:
        """Set the given ``status.lineage`` fields (None leaves a field as it is)."""
        known = self.st.lineage.model_dump(exclude_none=True) if self.st.lineage else {}
        self.st.lineage = Lineage.model_validate({**known, **{k: v for k, v in values.items() if v is not None}})


def trained_by(metadata: Mapping[str, Any]) -> dict[str, str] | None:
    """The RetrainPolicy or HyperparameterSearch that created this version.

    Read from the label its creator sets (``mlops.dev/retrainpolicy``, ``mlops.dev/hyperparametersearch``):
    a RetrainPolicy sets no owner reference, so deleting it never garbage-collects registered versions. A
    controller owner reference of either kind is still accepted.
    """
    labels = metadata.get("labels") or {}
    for label, kind in TRAINED_BY_LABELS.items():
        if labels.get(label):
            return {"kind": kind, "name": labels[label]}
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in TRAINER_KINDS:
            return {"kind": ref["kind"], "name": ref["name"]}
    return None


def _finite(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def owner_of(mv: ModelVersion) -> dict[str, str]:
    """Who commits this version's artifact: recorded in its manifest, checked before adopting or deleting."""
    meta = mv.metadata
    return {"namespace": meta["namespace"], "kind": mv.kind, "name": meta["name"], "uid": meta.get("uid") or ""}


def spec_hash(mv: ModelVersion) -> str:
    """sha256 of what the artifact is trained from (model + training): equal for a re-applied object."""
    training = mv.spec.training.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"pod"}) \
        if mv.spec.training is not None else None
    doc = {"model": mv.spec.model, "training": training}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ownership(mv: ModelVersion, check: ArtifactCheck) -> tuple[str, str] | None:
    """Why the committed version at this ModelVersion's own prefix must not be adopted, or None.

    Adopt only what this namespace's ModelVersion of the same name wrote from the same spec; never what
    another object wrote (the uid is not compared: a re-applied object gets a new one).
    """
    mine = owner_of(mv)
    found = {k: (check.owner or {}).get(k) for k in ("namespace", "kind", "name")}
    if found != {k: mine[k] for k in found}:
        writer = "/".join(str(v) for v in found.values()) if check.owner else "an unknown writer (no owner recorded)"
        return "ArtifactNotOwned", (f"{check.prefix} holds a version committed by {writer}, not by this ModelVersion; "
                                    "nothing of it is adopted: use another name")
    if check.spec_hash != spec_hash(mv):
        return "ArtifactExists", (f"{check.prefix} holds a version this ModelVersion's name committed from a different "
                                  "spec; versions are immutable: use a new name for the new spec (or delete the old "
                                  "artifacts with the annotation mlops.dev/delete-artifacts on the old object first)")
    return None


def bounded(value: Any, limit: int) -> dict[str, Any] | None:
    """``value`` if it is a mapping whose JSON fits in ``limit`` bytes, else the leading keys that fit."""
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    size = 2
    for key, item in value.items():
        size += len(json.dumps({key: item}, default=str)) + 1
        if size > limit:
            break
        out[key] = item
    return out


def _short(value: Any, limit: int = 256) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _signature(value: Any) -> Signature | None:
    """The report's signature if it fits ``MAX_SIGNATURE_BYTES`` and reads as one, else None."""
    try:
        return Signature.model_validate(bounded(value, MAX_SIGNATURE_BYTES)) if isinstance(value, dict) else None
    except ValidationError:
        return None


def labels_lineage(spec_labels: Any, report: Any = None) -> dict[str, Any] | None:
    """What ``status.lineage.labels`` says about point-in-time labels: ``{source, maxAge?, asOf?, labels?,
    joined?, dropped?}``, or None without them. Before training, the spec tells the source and the bound;
    after it, the trainer's report (``metrics.json`` ``data.labels``) adds the as-of rule it applied and the
    join's counts.

    >>> class L: source = type("S", (), {"uri": "s3://b/labels.csv"}); max_age = "1h"
    >>> labels_lineage(L(), {"asOf": "t <= label time", "labels": 3, "joined": 2, "dropped": {"tooOld": 1}})
    {'source': 's3://b/labels.csv', 'maxAge': '1h', 'asOf': 't <= label time', 'labels': 3, 'joined': 2, 'dropped': {'tooOld': 1}}
    """
    if spec_labels is None:
        return None
    doc: dict[str, Any] = {"source": spec_labels.source.uri, "maxAge": spec_labels.max_age}
    if isinstance(report, Mapping):
        doc["asOf"] = _short(report.get("asOf"))
        for key in ("labels", "joined"):
            value = report.get(key)
            doc[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
        dropped = report.get("dropped")
        if isinstance(dropped, Mapping):
            doc["dropped"] = {str(k): v for k, v in list(dropped.items())[:MAX_DROP_CAUSES]
                              if isinstance(v, int) and not isinstance(v, bool)}
    return {k: v for k, v in doc.items() if v is not None}


# ----------------------------------------------------------------------------------------- steps


def build_job(mv: ModelVersion, world: World, cfg: JobSettings) -> dict[str, Any]:
    """The training Job for ``mv``; featureSet.version is pinned to the resolved snapshot."""
    training = mv.spec.training
    assert training is not None and world.artifact_prefix is not None
    training_doc = training.to_dict()
    training_doc.pop("pod", None)  # how the pod runs is not what the trainer trains
    meta = mv.metadata
    extra_env: dict[str, str] = {
        "MLOPS_OWNER": json.dumps(owner_of(mv), sort_keys=True, separators=(",", ":")),
        "MLOPS_SPEC_HASH": spec_hash(mv),
    }
    if training.feature_set is not None and world.snapshot is not None:
        training_doc["featureSet"]["version"] = world.snapshot["version"]
        extra_env["MLOPS_FEATURESET_URI"] = world.snapshot["uri"]
    stable = _scorable(world.baseline)
    if stable is not None:
        extra_env[BASELINE_ENV] = json.dumps({"version": stable.version, "uri": stable.uri, "sha256": stable.sha256},
                                             sort_keys=True, separators=(",", ":"))
    deadline = parse_duration(training.timeout or cfg.default_timeout)
    owner = {"apiVersion": mv.api_version, "kind": mv.kind,
             "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}}
    return build_training_job(TrainingJobInput(
        owner=owner, model=mv.spec.model, training=training_doc, artifact_prefix=world.artifact_prefix,
        image=cfg.image, s3_secret=cfg.s3_secret, active_deadline_seconds=max(1, int(deadline.total_seconds())),
        backoff_limit=cfg.backoff_limit, image_pull_policy=cfg.image_pull_policy,
        resources=training.resources.to_dict() if training.resources else {}, extra_env=extra_env,
        ttl_seconds_after_finished=cfg.ttl_seconds_after_finished,
        pod=merge_pod_overrides(cfg.pod_defaults, training.pod)))


BASELINE_ENV = "MLOPS_BASELINE"  # the stable version the trainer scores on its test rows (runtime.train_baseline)


def _scorable(baseline: Baseline | None) -> Baseline | None:
    """The stable version when there is one with a verified artifact to score, else None."""
    return baseline if baseline is not None and baseline.version and baseline.uri else None


def _start(p: _Pass, world: World, cfg: JobSettings) -> JobOutcome:
    """Pending: register an artifact (go validate) or start training (create the Job)."""
    spec = p.mv.spec
    if spec.artifact is not None:
        p.phase(VALIDATING, "Verifying", f"verifying the registered artifact {spec.artifact.uri}", event="Registering")
        return p.done()
    training = spec.training
    assert training is not None
    if training.feature_set is not None and world.snapshot is None:  # inputs first, then where to write
        p.condition("Ready", "False", "WaitingForFeatureSet",
                    f"FeatureSet {training.feature_set.name!r} has no Ready snapshot yet")
        return p.done()
    if world.artifact_prefix is None:
        return p.retrying("S3SecretNotFound", world.storage_problem)
    if world.committed:  # deleted and re-applied, restored: check what is there instead of training again
        p.phase(VALIDATING, "Verifying", f"{world.artifact_prefix} already holds a committed version; verifying "
                "that this ModelVersion committed it from the same spec", event="ArtifactFound")
        return p.done()
    job = build_job(p.mv, world, cfg)
    name = job["metadata"]["name"]
    dataset = training.dataset
    p.lineage(job=name, image=cfg.image, trained_by=trained_by(p.mv.metadata),
              feature_set=training.feature_set.name if training.feature_set else None,
              feature_set_version=world.snapshot["version"] if world.snapshot else None,
              dataset=(world.snapshot or {}).get("uri") or (dataset and (dataset.uri or dataset.builtin)),
              labels=labels_lineage(training.feature_set and training.feature_set.labels))
    stable = _scorable(world.baseline)
    scoring = (f"; it also scores stable version {stable.version} of ModelDeployment {stable.deployment} on the "
               "same test rows (mustBeatStable)") if stable else ""
    p.phase(TRAINING, "Training", f"training Job {name} created{scoring}", event="TrainingStarted")
    return p.done(job=job)


def _watch_job(p: _Pass, world: World, cfg: JobSettings) -> JobOutcome:
    """Training: follow the Job to its end; recreate it if someone deleted it mid-run."""
    job = world.job
    assert job is not None
    if job.state == JobState.MISSING:
        if world.artifact_prefix is None:
            return p.retrying("S3SecretNotFound", world.storage_problem)
        p.event("Warning", "JobRecreated", f"training Job {job.name} disappeared; created it again")
        return p.done(job=build_job(p.mv, world, cfg))
    p.lineage(started_at=job.started_at)
    if job.state == JobState.ACTIVE:
        if job.failed_attempts:
            p.condition("Retrying", "True", job.reason,
                        f"attempt {job.failed_attempts} failed ({job.message}); the Job retries")
        return p.done()
    p.lineage(finished_at=job.finished_at)
    if job.state == JobState.SUCCEEDED:
        p.phase(VALIDATING, "Verifying", f"training Job {job.name} succeeded; verifying the artifact",
                event="TrainingSucceeded")
    elif job.reason == "ArtifactExists":  # a committed version is there: verify it rather than train again
        message = f"{job.message}; verifying the committed version"
        p.phase(VALIDATING, "Verifying", message)
        p.event("Warning", "ArtifactExists", message)
    else:
        p.phase(FAILED, job.reason, job.message)
        p.event("Warning", "TrainingFailed", f"{job.reason}: {job.message}")
    return p.done()


def _unread(p: _Pass, world: World, check: ArtifactCheck | None) -> JobOutcome | None:
    """The decision when the artifact (or its report) could not be read as committed, else None."""
    if world.artifact_prefix is None:
        return p.retrying("S3SecretNotFound", world.storage_problem)
    assert check is not None
    if check.problem in ("unavailable", "denied", "storage"):
        return p.retrying(check.reason, check.message)
    if check.problem == "integrity":
        return _integrity(p, check.reason, check.message)
    return None


def _verify(p: _Pass, world: World) -> JobOutcome:
    """Validating: the artifact must match its manifest (and the registered sha256) before anything else."""
    check = world.artifact
    unread = _unread(p, world, check)
    if unread is not None:
        return unread
    assert check is not None
    spec = p.mv.spec
    if spec.artifact is not None and check.model_sha256 != spec.artifact.sha256:
        return _integrity(p, "Sha256Mismatch", f"model.joblib at {check.prefix} has sha256 {check.model_sha256}, "
                                               f"not spec.artifact.sha256 {spec.artifact.sha256}")
    if spec.training is not None:
        refusal = ownership(p.mv, check)
        if refusal is not None:
            reason, message = refusal
            p.phase(FAILED, reason, message, event=reason)
            return p.done()
        if (check.owner or {}).get("uid") != p.mv.metadata.get("uid"):
            message = (f"adopted the version committed at {check.prefix} on {check.committed_at or '?'} by this "
                       "namespace's ModelVersion of the same name and spec (deleted and re-applied, or restored)")
            p.condition(ADOPTED, "True", ADOPTED, message)
            p.event("Normal", ADOPTED, message)
    report = check.report or {}
    metrics = dict(list(_finite(report.get("metrics")).items())[:MAX_METRICS])
    p.st.artifact = ArtifactStatus(uri=check.prefix, sha256=check.model_sha256, size_bytes=check.model_size,
                                   format=check.format)
    p.st.metrics = metrics
    primary = next((str(m) for m in (spec.training.metrics or []) if str(m) in metrics), None) if spec.training else None
    primary = primary or next(iter(metrics), None)
    if primary:
        p.st.primary_metric = PrimaryMetric(name=primary, value=metrics[primary])
    parameters = bounded(report.get("parameters"), MAX_PARAMETERS_BYTES)
    if parameters is not None:
        p.st.parameters = parameters
    p.st.signature = _signature(report.get("signature")) or p.st.signature
    data = report.get("data") if isinstance(report.get("data"), dict) else {}
    known = p.st.lineage or Lineage()
    feature_set = spec.training.feature_set if spec.training else None
    p.lineage(dataset_sha256=_short(data.get("sha256")),  # an adopted version ran no Job: the report's times
              labels=labels_lineage(feature_set and feature_set.labels, data.get("labels")),
              started_at=None if known.started_at else _short(report.get("startedAt")),
              finished_at=None if known.finished_at else _short(report.get("finishedAt")))
    p.condition("IntegrityError", "False", "Verified", f"sha256 of every file matches the manifest at {check.prefix}")
    p.event("Normal", "ArtifactVerified", f"{check.prefix} verified (model sha256 {check.model_sha256})")
    compiled = compiled_status(report)
    p.st.compiled = CompiledStatus.model_validate(compiled)
    compiled_state, compiled_reason, compiled_message = compiled_condition(compiled)
    p.condition(COMPILED, compiled_state, compiled_reason, compiled_message)
    p.event("Normal", compiled_reason, compiled_message)
    return p.done()


def _integrity(p: _Pass, reason: str, message: str) -> JobOutcome:
    p.condition("IntegrityError", "True", reason, message)
    p.phase(REJECTED, "IntegrityError", message)
    return p.done()


def _gate(p: _Pass, world: World) -> JobOutcome:
    """Validating with a verified artifact: the gates decide Ready or Rejected."""
    gates = p.mv.spec.gates
    scored = None
    if gates is not None and gates.must_beat_stable is not None:  # the report's same-rows score of stable
        unread = _unread(p, world, world.report)
        if unread is not None:
            return unread
        scored = ((world.report and world.report.report) or {}).get("baseline")
    verdict = evaluate_gates(gates, p.st.metrics or {}, world.baseline, scored)
    p.st.gate_results = [GateResult.model_validate(r) for r in verdict.results]
    if verdict.passed:
        notes = "; ".join(verdict.notes)
        adopted = (get_condition(p.conditions, ADOPTED) or {}).get("status") == "True"
        p.phase(READY, ADOPTED if adopted else "GatesPassed",
                ("adopted the committed version; " if adopted else "") + "every gate passed"
                + (f" ({notes})" if notes else ""), event="Ready")
    else:
        p.phase(REJECTED, "GatesFailed", "; ".join(verdict.failures), event="Rejected")
    return p.done()


# ---------------------------------------------------------------------------------------- decide


def decide(mv: ModelVersion, status: Mapping[str, Any], world: World, cfg: JobSettings, now: datetime) -> JobOutcome:
    """The next step for ``mv`` given what was observed; see the module docstring for the order."""
    p = _Pass(mv, status, now)
    phase = p.st.phase
    if phase in TERMINAL:
        return p.done()
    p.st.observed_generation = p.generation
    if not phase:
        phase = p.st.phase = ModelVersionPhase.PENDING
        p.st.stage = p.st.stage or ModelStage.NONE
        p.condition("Ready", "False", "Pending", "accepted; waiting to start")
    conditions, events = apply_invalid_spec(p.conditions, world.problems, generation=p.generation, now=now)
    p.conditions, p.events = conditions, events
    if world.problems:  # nothing starts or gets judged on a dangling reference
        return p.done()
    if phase == PENDING:
        return _start(p, world, cfg)
    if phase == TRAINING:
        return _watch_job(p, world, cfg)
    if not (p.st.artifact and p.st.artifact.uri):
        return _verify(p, world)
    return _gate(p, world)


def job_name(mv: ModelVersion) -> str:
    return training_job_name(mv.metadata["name"])


DELETE_ARTIFACTS = "mlops.dev/delete-artifacts"


def should_delete_artifacts(mv: ModelVersion) -> tuple[bool, str]:
    """Whether deleting ``mv`` also deletes its files, and why (artifacts are retained by default).

    Only a version this operator trained owns its prefix; a registered artifact belongs to whoever
    uploaded it and may back other versions, so it is never deleted.
    """
    if (mv.metadata.get("annotations") or {}).get(DELETE_ARTIFACTS) != "true":
        return False, f"artifacts retained (set annotation {DELETE_ARTIFACTS}: \"true\" to delete them with the version)"
    if mv.spec.artifact is not None:
        return False, f"registered artifact {mv.spec.artifact.uri} retained: it was not created by this version"
    return True, "deleting the trained artifacts"
