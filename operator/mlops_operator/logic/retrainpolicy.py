"""RetrainPolicy reconciliation: which triggers fired, whether a retrain may start, how it ended (pure).

::

    triggers ──gates open──▶ rN recorded in status (retrains=N, active+=<policy>-rN, cooldownUntil)
        ──next pass──▶ ModelVersion <policy>-rN created (RetrainStarted)
        ──Ready──▶ RetrainSucceeded      ──Rejected | Failed | deleted──▶ RetrainFailed (Warning)

Triggers, in this order; several in one pass start ONE retrain, named after the first, the others are
recorded as ``Coalesced`` (so an alert storm trains once):

- manual: a new value of the annotation ``mlops.dev/retrain`` (acts once: ``status.handledRequest``);
- alert: every entry of ``status.pendingAlerts`` (appended by the /alerts webhook), consumed in the same
  status write that records it in history with fingerprint ``<fingerprint>@<startsAt>`` (a key already
  in history is consumed without acting again);
- schedule: a cron slot fell due since ``status.lastScheduledAt`` (else since creation, as Kubernetes
  CronJob counts); however many slots were missed, it fires once for the latest. A schedule added to a
  policy that was already running starts from its most recent slot without firing it;
- metric: the PromQL value (``{{namespace}}`` and ``{{model}}`` are filled in) compared with the threshold
  held for ``for`` (``status.metricBreachSince``). The query runs every ``interval``
  (``status.lastMetricCheck``). No data, NaN/Inf and an unreachable Prometheus never trigger: they set
  ``MetricAvailable=False`` with the reason and restart the ``for`` clock (Prometheus' own rule: a
  breach must be seen continuously);
- featureSet: the FeatureSet's ``latestVersion`` differs from ``status.lastFeatureSetVersion``; the first
  observation only records it.

Manual requests, alerts and schedule slots are *events*: consumed by the pass that sees them and recorded
in history with their outcome — ``Created``, ``Coalesced`` or the gate that held them. The metric breach
and a newer FeatureSet snapshot are *levels*: they persist, so while a gate holds they wait (shown in the
Ready message) and act when it opens, if they still hold — a snapshot published during the cooldown is
trained on after it, a metric that stays bad retrains at most once per cooldown. When a retrain starts
they are satisfied: the breach clock restarts and the snapshot seen is recorded.

Gates, in this order (outcome in history): references of the template missing (``InvalidSpec``),
``spec.suspend`` (``Suspended``), as many created ModelVersions still running as ``maxConcurrent``
(``MaxConcurrent``), ``now < cooldownUntil`` (``CoolingDown``). Gated events get a Normal event.

Fresh data: when the template trains on a FeatureSet's latest snapshot (``featureSet.version`` empty), a
retrain first asks the FeatureSet for a new snapshot of the current source data — the record's outcome is
``Refreshing`` and it carries ``snapshotRequest``, the value the policy puts in the FeatureSet's
``mlops.dev/materialize`` annotation. Once the FeatureSet lists a snapshot built for that request, the
record is pinned to it (``featureSetVersion``) and the retrain goes on as below; if that materialization
fails, the retrain ends ``SnapshotFailed`` (Warning RetrainFailed) and nothing trains on stale data. A retrain
that a new snapshot triggered (featureSet trigger) is pinned to that snapshot without asking for another.

Starting: N = retrains + 1 (never reused), the name ``<policy>-rN`` and the record (outcome ``Creating``)
are written to status first; the next pass creates the ModelVersion (AlreadyExists is success) and marks
it ``Created`` — even if the policy was suspended or its references broke meanwhile: a gate stops new
retrains, not a recorded one (as suspending a CronJob leaves started Jobs alone). A name held by a
ModelVersion this policy did not create (e.g. a predecessor of the same name) is skipped for the next
free number. cooldownUntil = start + cooldown.

Watching: ``active`` ModelVersions are read every pass (listed by the label ``mlops.dev/retrainpolicy``,
and only those carrying this policy's uid count); a terminal one (Ready, Rejected, Failed) or a deleted
one leaves ``active``, its history record (and lastTriggered) gets that outcome, and an event says so:
RetrainSucceeded, or RetrainFailed (Warning) with the version's Ready message.

Retention: the policy keeps the ``historyLimit`` newest of the ModelVersions it created (listed every pass
once it has created more than that) and deletes older finished ones, oldest first, one per pass — never one that may be served (stage
Production/Staging or routed by a ModelDeployment of the namespace) nor the newest Ready one
(``logic.deletion.beyond_history_limit``). Their artifacts go too when the version carries
``mlops.dev/delete-artifacts: "true"``: ``spec.deleteArtifacts`` puts it on every version the policy
creates, and on a version about to be pruned that lacks it (then waits for the finalizer before deleting).
Event VersionPruned.

Phase: Suspended | Retraining (active) | Failed (references missing) | CoolingDown | Idle. The trigger
detectors are ``logic.retrain_triggers``; this module gates, records and watches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import format_time, get_condition
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.api.v1alpha1.retrainpolicy import RetrainPolicy
from mlops_operator.builders.retrain import ANNOTATION_POLICY_UID, RetrainInput, build_model_version, model_version_name
from mlops_operator.logic import deletion
from mlops_operator.logic import retrain_triggers as triggers
from mlops_operator.logic.analysis import parse_time
from mlops_operator.logic.featureset import REQUEST_ANNOTATION as MATERIALIZE_ANNOTATION
from mlops_operator.logic.references import Problem, Reference, apply_invalid_spec, training_references
from mlops_operator.logic.retrain_triggers import REQUEST_ANNOTATION, MetricReading, Trigger
from mlops_operator.logic.status import Outcome, Pass

SUSPENDED, RETRAINING, FAILED, COOLING_DOWN, IDLE = "Suspended", "Retraining", "Failed", "CoolingDown", "Idle"
# Outcomes recorded in history (besides the gates' and the ModelVersion's final phase).
CREATING, CREATED, COALESCED, DELETED = "Creating", "Created", "Coalesced", "Deleted"
REFRESHING, SNAPSHOT_FAILED = "Refreshing", "SnapshotFailed"
INVALID_SPEC, MAX_CONCURRENT = "InvalidSpec", "MaxConcurrent"
READY = "Ready"
TERMINAL = frozenset({READY, "Rejected", "Failed"})
METRIC_AVAILABLE = "MetricAvailable"
STALE_CONDITIONS = frozenset({"Accepted"})  # written by the validate-only controller of earlier releases


@dataclass(frozen=True)
class ObservedVersion:
    """A ModelVersion as the policy sees it."""

    name: str
    phase: str | None = None
    message: str = ""             # its Ready condition's message
    policy_uid: str | None = None  # annotation: the uid of the policy that created it
    body: Mapping[str, Any] = field(default_factory=dict, compare=False)  # for retention


def observe_version(body: Mapping[str, Any]) -> ObservedVersion:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    ready = get_condition(status.get("conditions"), "Ready") or {}
    return ObservedVersion(meta.get("name", ""), status.get("phase"), ready.get("message") or "",
                           (meta.get("annotations") or {}).get(ANNOTATION_POLICY_UID), body)


@dataclass(frozen=True)
class Needs:
    references: list[Reference] = field(default_factory=list)
    versions: bool = False              # list the ModelVersions labelled with the policy
    pending: str | None = None          # a ModelVersion to read by name (about to be created)
    metric_query: str | None = None     # PromQL to run now (the interval has passed)


@dataclass(frozen=True)
class World:
    problems: list[Problem] = field(default_factory=list)
    versions: Mapping[str, ObservedVersion] = field(default_factory=dict)  # listed by the policy label
    pending: ObservedVersion | None = None      # the ModelVersion named by Needs.pending, if it exists
    feature_set_version: str | None = None      # the template FeatureSet's latestVersion
    feature_set: Mapping[str, Any] | None = None  # the template FeatureSet (metadata + status), if it exists
    metric: MetricReading | None = None         # None: not queried this pass
    routed: frozenset[str] | None = None        # versions ModelDeployments route to (None: not read)


@dataclass(frozen=True)
class Prune:
    """One retention action on a version: annotate it for artifact deletion, or delete it (uid-guarded)."""

    action: str   # deletion.Prune.ANNOTATE | deletion.Prune.DELETE
    name: str
    uid: str | None


@dataclass
class RetrainOutcome(Outcome):
    """A pass's outcome plus what it creates, prunes or asks of the FeatureSet."""

    model_version: dict[str, Any] | None = None   # manifest to create (AlreadyExists is success)
    prune: Prune | None = None
    request_snapshot: tuple[str, str] | None = None  # (FeatureSet, value): set its mlops.dev/materialize


# ------------------------------------------------------------------------------------------- needs


def _pending(status: Mapping[str, Any]) -> str | None:
    last = status.get("lastTriggered") or {}
    return last.get("modelVersion") if last.get("outcome") == CREATING else None


def references(rp: RetrainPolicy) -> list[Reference]:
    template = rp.spec.template
    return training_references(template.training, template.gates, prefix="spec.template")


def needs(rp: RetrainPolicy, status: Mapping[str, Any], now: datetime) -> Needs:
    pending = _pending(status)  # the creating (or refreshing) pass queries no metric: it only creates
    query = None if (pending is not None or _refreshing(status)) else triggers.metric_query(rp, status, now)
    # Retention can only have work once more versions were created than historyLimit keeps.
    retention = (status.get("retrains") or 0) > rp.spec.history_limit
    return Needs(references=references(rp), versions=bool(pending or status.get("active") or retention),
                 pending=pending, metric_query=query)


def _retention_candidates(rp: RetrainPolicy, versions: Mapping[str, ObservedVersion], active: list[str],
                          routed: frozenset[str]) -> list[str]:
    uid = rp.metadata.get("uid")
    ours = [deletion.version_of(v.body, routed) for v in versions.values()
            if v.policy_uid == uid and v.name not in active and v.body]
    return deletion.beyond_history_limit(ours, rp.spec.history_limit)


def needs_deployments(rp: RetrainPolicy, status: Mapping[str, Any], versions: Mapping[str, ObservedVersion]) -> bool:
    """Whether retention has candidates, so the ModelDeployments' routes must be read to rule served ones out."""
    return bool(_retention_candidates(rp, versions, status.get("active") or [], frozenset()))


# ----------------------------------------------------------------------------------------- the pass


class _Pass(Pass):
    outcome = RetrainOutcome
    condition_limit = 4096

    def __init__(self, rp: RetrainPolicy, status: Mapping[str, Any], now: datetime) -> None:
        super().__init__(rp.metadata, status, now)
        self.rp = rp
        self.name, self.uid = rp.metadata.get("name", ""), rp.metadata.get("uid")
        self.waiting: list[str] = []

    def drop_conditions(self, types: frozenset[str]) -> None:
        if any(c.get("type") in types for c in self.status.get("conditions") or []):
            self.status["conditions"] = [c for c in self.status["conditions"] if c.get("type") not in types]

    def put(self, key: str, value: Any) -> None:
        """Set ``key``, or remove it when ``value`` is empty (status holds no nulls)."""
        if value is None or value == []:
            self.status.pop(key, None)
        else:
            self.status[key] = value

    def append_history(self, records: list[dict[str, Any]]) -> None:
        history = list(self.status.get("history") or []) + records
        self.status["history"] = history[-self.rp.spec.history_limit:]

    def update_record(self, model_version: str, **values: Any) -> None:
        """Change the history record (and lastTriggered) of ``model_version``."""
        for rec in self.status.get("history") or []:
            if rec.get("modelVersion") == model_version:
                rec.update(values)
        last = self.status.get("lastTriggered")
        if last and last.get("modelVersion") == model_version:
            last.update(values)

    def ours(self, version: ObservedVersion | None) -> bool:
        return version is not None and version.policy_uid == self.uid


# ------------------------------------------------------------------------------- create and watch


def _number(policy: str, name: str) -> int:
    match = re.fullmatch(re.escape(policy) + r"-r([0-9]+)", name)
    return int(match.group(1)) if match else 0


def _create(p: _Pass, name: str, world: World) -> RetrainOutcome:
    """Create the recorded ModelVersion, or move to the next number if the name is someone else's."""
    if world.pending is not None and not p.ours(world.pending):
        number = max([p.status.get("retrains") or 0, *(_number(p.name, n) for n in world.versions)]) + 1
        new = model_version_name(p.name, number)
        p.update_record(name, modelVersion=new)
        p.status.update(retrains=number, active=[new if n == name else n for n in p.status.get("active") or []])
        p.event("Warning", "ModelVersionNameTaken",
                f"ModelVersion {name} exists and was not created by this policy; the retrain uses {new}")
        return p.done()
    record = p.status["lastTriggered"]
    p.update_record(name, outcome=CREATED)
    p.event("Normal", "RetrainStarted", f"created ModelVersion {name} ({record['source']}: {record.get('detail', '')})")
    if world.pending is not None:  # created before a crash (or by a racing pass): AlreadyExists is success
        return p.done()
    return p.done(model_version=build_model_version(RetrainInput(
        policy=p.name, namespace=p.rp.metadata.get("namespace", ""), policy_uid=p.uid or "", model=p.rp.spec.model,
        template=p.rp.spec.template, name=name, source=record["source"], detail=record.get("detail", ""),
        delete_artifacts=p.rp.spec.delete_artifacts, feature_set_version=record.get("featureSetVersion"))))


def _watch(p: _Pass, world: World) -> None:
    """Active ModelVersions that finished or vanished leave ``active``; their record gets the outcome."""
    running = []
    for name in p.status.get("active") or []:
        mv = world.versions.get(name)
        if p.ours(mv) and mv.phase not in TERMINAL:
            running.append(name)
            continue
        outcome = mv.phase if p.ours(mv) else DELETED
        p.update_record(name, outcome=outcome)
        if outcome == READY:
            p.event("Normal", "RetrainSucceeded", f"ModelVersion {name} is Ready")
        else:
            why = mv.message if p.ours(mv) and mv.message else "deleted before it finished"
            p.event("Warning", "RetrainFailed", f"ModelVersion {name} {outcome}: {why}")
    p.put("active", running)


# ----------------------------------------------------------------------------------- gates, start


def _observe_metric(p: _Pass, reading: MetricReading | None) -> None:
    if p.rp.spec.triggers.metric is None:
        for key in ("lastMetricCheck", "metricBreachSince"):
            p.status.pop(key, None)
        p.drop_conditions(frozenset({METRIC_AVAILABLE}))
    elif reading is not None:
        p.condition(METRIC_AVAILABLE, *triggers.observe_metric(p.rp, p.status, reading, p.now))


def _gate(p: _Pass, problems: list[Problem]) -> tuple[str, str] | None:
    """The first gate that holds a retrain back (outcome, why), or None."""
    spec = p.rp.spec
    active = p.status.get("active") or []
    until = parse_time(p.status.get("cooldownUntil"))
    if problems:
        return INVALID_SPEC, "; ".join(pr.message for pr in problems)
    if spec.suspend:
        return SUSPENDED, "spec.suspend is true"
    if len(active) >= spec.max_concurrent:
        return MAX_CONCURRENT, (f"{len(active)} retrain(s) running ({', '.join(active)}), "
                                f"maxConcurrent {spec.max_concurrent}")
    if until is not None and p.now < until:
        return COOLING_DOWN, f"cooling down until {format_time(until)}"
    return None


def _summary(triggers: list[Trigger]) -> str:
    return "; ".join(f"{t.source}: {t.detail}" for t in triggers)


def _act(p: _Pass, found: list[Trigger], problems: list[Problem], latest: str | None) -> None:
    if not found:
        return
    gate = _gate(p, problems)
    if gate is not None:
        outcome, why = gate
        held = [t for t in found if not t.level]
        p.waiting = [f"{t.source} trigger waits ({why})" for t in found if t.level]
        if held:
            p.append_history([t.record(p.now, outcome) for t in held])
            p.event("Normal", "RetrainSkipped", f"{outcome} ({why}): {_summary(held)}")
        return
    winner, others = found[0], found[1:]
    number = (p.status.get("retrains") or 0) + 1
    name = model_version_name(p.name, number)
    record = winner.record(p.now, CREATING, name)
    if trains_on_latest_snapshot(p.rp):
        if any(t.source == triggers.FEATURE_SET for t in found) and latest:
            record["featureSetVersion"] = latest  # the snapshot that triggered it is the fresh data
        else:
            record.update(outcome=REFRESHING, snapshotRequest=snapshot_request(p.name, p.uid, number))
    for t in found:
        triggers.satisfy(p.status, t, latest, p.now)
    p.append_history([t.record(p.now, COALESCED) for t in others] + [record])  # the retrain's record last
    if others:
        p.event("Normal", "TriggersCoalesced", f"{len(others)} trigger(s) coalesced into {name}: {_summary(others)}")
    cooldown = parse_duration(p.rp.spec.cooldown)
    p.status.update(retrains=number, lastTriggered=dict(record), active=[*(p.status.get("active") or []), name],
                    cooldownUntil=format_time(p.now + cooldown))


# ------------------------------------------------------------------------------------ fresh data


def trains_on_latest_snapshot(rp: RetrainPolicy) -> bool:
    """Whether each retrain should train on a snapshot materialized for it (template: latest snapshot)."""
    ref = rp.spec.template.training.feature_set
    return ref is not None and not ref.version


def snapshot_request(policy: str, uid: str | None, number: int) -> str:
    """The ``mlops.dev/materialize`` value of retrain N: unique to this policy object and retrain.

    >>> snapshot_request("bc-retrain", "0f1e2d3c-aaaa", 3)
    'retrainpolicy/bc-retrain/0f1e2d3c/r3'
    """
    return f"retrainpolicy/{policy}/{(uid or '')[:8]}/r{number}"


def _refreshing(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    last = status.get("lastTriggered") or {}
    return last if last.get("outcome") == REFRESHING else None


def refresh_state(feature_set: Mapping[str, Any] | None, request: str) -> tuple[str, str]:
    """Where the FeatureSet is with ``request``: (ready, version) | (materializing|waiting|request, "") |
    (failed, why)."""
    if feature_set is None:
        return "waiting", ""
    status = feature_set.get("status") or {}
    for ref in reversed(status.get("versions") or []):
        if ref.get("request") == request:
            return "ready", str(ref.get("version"))
    if status.get("handledRequest") == request:
        if status.get("activeVersion"):
            return "materializing", ""
        failed = get_condition(status.get("conditions"), "Materialized") or {}
        return "failed", failed.get("message") or "the materialization failed"
    if ((feature_set.get("metadata") or {}).get("annotations") or {}).get(MATERIALIZE_ANNOTATION) == request:
        return "waiting", ""
    return "request", ""


def _refresh(p: _Pass, record: Mapping[str, Any], world: World) -> RetrainOutcome:
    """Refreshing: ask the FeatureSet for a snapshot, wait for it, then pin the retrain to it."""
    name, request = record["modelVersion"], record["snapshotRequest"]
    fs = p.rp.spec.template.training.feature_set.name
    state, detail = refresh_state(world.feature_set, request)
    if state == "ready":
        p.update_record(name, outcome=CREATING, featureSetVersion=detail)
        p.event("Normal", "SnapshotReady", f"FeatureSet {fs} materialized {detail} for {name}; training on it")
        return p.done()
    if state == "failed":
        p.update_record(name, outcome=SNAPSHOT_FAILED)
        p.put("active", [n for n in p.status.get("active") or [] if n != name])
        p.event("Warning", "RetrainFailed", f"{name}: the fresh snapshot of FeatureSet {fs} failed, nothing was "
                                           f"trained on stale data: {detail}")
        return p.done()
    p.waiting = [f"{name} waits for a fresh snapshot of FeatureSet {fs} ({state})"]
    return p.done(request_snapshot=(fs, request) if state == "request" else None)


# ------------------------------------------------------------------------------------- retention


def _retain(p: _Pass, world: World) -> Prune | None:
    """The next retention action: the oldest version beyond historyLimit that is not done yet."""
    if world.routed is None:
        return None
    for name in _retention_candidates(p.rp, world.versions, p.status.get("active") or [], world.routed):
        body = world.versions[name].body
        step = deletion.prune_step(body, delete_artifacts=p.rp.spec.delete_artifacts)
        uid = (body.get("metadata") or {}).get("uid")
        if step == deletion.Prune.ANNOTATE:
            return Prune(step, name, uid)
        if step == deletion.Prune.DELETE:
            p.event("Normal", "VersionPruned", f"deleted ModelVersion {name}: older than the "
                                               f"{p.rp.spec.history_limit} kept by historyLimit")
            return Prune(step, name, uid)
    return None


# ---------------------------------------------------------------------------------------- settle


def _settle(p: _Pass, problems: list[Problem]) -> None:
    spec = p.rp.spec
    active = p.status.get("active") or []
    until = parse_time(p.status.get("cooldownUntil"))
    if spec.suspend:
        phase = SUSPENDED
    elif active:
        phase = RETRAINING
    elif problems:
        phase = FAILED
    elif until is not None and p.now < until:
        phase = COOLING_DOWN
    else:
        phase = IDLE
    p.status["phase"] = phase
    if len(p.status.get("history") or []) > spec.history_limit:  # historyLimit was lowered
        p.status["history"] = p.status["history"][-spec.history_limit:]
    if problems:
        p.condition("Ready", "False", problems[0].reason, "; ".join(pr.message for pr in problems))
    elif spec.suspend:
        p.condition("Ready", "False", SUSPENDED, "spec.suspend is true: no retrain starts (requests, alerts and "
                    "schedule slots are recorded as Suspended; a metric breach or a new snapshot waits)")
    else:
        parts = [f"watching {', '.join(_watched(p.rp))}"]
        if active:
            parts.append(f"retraining {', '.join(active)}")
        if phase == COOLING_DOWN:
            parts.append(f"cooling down until {format_time(until)}")
        p.condition("Ready", "True", "Watching", "; ".join(parts + p.waiting))
    p.recovered()


def _watched(rp: RetrainPolicy) -> list[str]:
    t = rp.spec.triggers
    out = ["alerts"] if t.alerts else []
    if t.schedule:
        out.append(f"schedule {t.schedule!r}")
    if t.metric:
        out.append(f"metric {t.metric.op} {t.metric.threshold:g}")
    if t.on_feature_set_update:
        out.append(f"FeatureSet {rp.spec.template.training.feature_set.name}")
    return out + [f"annotation {REQUEST_ANNOTATION}"]


def decide(rp: RetrainPolicy, status: Mapping[str, Any], world: World, now: datetime) -> RetrainOutcome:
    """The next step for ``rp``; see the module docstring."""
    p = _Pass(rp, status, now)
    p.drop_conditions(STALE_CONDITIONS)
    p.status["conditions"], events = apply_invalid_spec(p.status.get("conditions"), world.problems,
                                                        generation=p.generation, now=now)
    p.events.extend(events)
    pending, refreshing = _pending(status), _refreshing(status)
    if pending is not None or refreshing is not None:
        decision = _create(p, pending, world) if pending is not None else _refresh(p, refreshing, world)
        _settle(p, world.problems)
        p.status["observedGeneration"] = p.generation
        return decision
    _watch(p, world)
    _observe_metric(p, world.metric)
    st, latest = p.status, world.feature_set_version
    found = (triggers.manual(rp, st) + triggers.alerts(st) + triggers.schedule(rp, st, now)
             + triggers.metric(rp, st, now) + triggers.feature_set(rp, st, latest))
    p.status["observedGeneration"] = p.generation  # after schedule(): it tells a new policy from a running one
    _act(p, found, world.problems, latest)
    _settle(p, world.problems)
    return p.done(prune=_retain(p, world))
