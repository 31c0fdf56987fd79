"""What every strategy shares: the pass context, the transitions, analysis timing and recording. Pure.

Transitions (each records itself in status, history and an event, in one place):
- ``start``: a candidate is chosen; weight 0, step 0, analysis and failed checks from zero. A new desired
  version mid-rollout goes through ``supersede`` then ``start``, so nothing measured for the old
  candidate is ever credited to the new one.
- ``enter_step``: the weight moves; ``stepStartedAt`` is now. Only runs *after* it count for the step.
- ``promote`` / ``rollback``: the candidate becomes stable / is given up (``abortedVersion``, and
  ``blockedVersions`` so ``track`` never picks it again until ``mlops.dev/retry``). Neither deletes
  anything: the old version's pods go later, once no route references them (``housekeeping``), so on
  failure traffic is back on stable before the candidate is scaled down.
- Post-promotion window (``spec.analysis.postPromotion``): ``promote`` with a previous stable opens it
  (``status.postPromotion``: version, previous, until). Analysis keeps running against the new stable
  version while the previous one stays warm; ``rollback_promotion`` moves all traffic back to it at once
  (phase ``RolledBack``), ``end_window`` closes it once it has passed (then the previous version goes).

Analysis timing: the first run of a step is due one interval after the step started (its window then
lies inside the step), the next one interval after the previous. A step may advance only on a passing
run that is newer than the step start and not older than one interval ("fresh"): after a restart at
30 % the last run is stale and a new one is measured first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from mlops_operator.api.v1alpha1.common import ModelDeploymentPhase, format_time, get_condition, set_condition
from mlops_operator.api.v1alpha1.modeldeployment import Analysis, Autoscaling, ModelDeploymentSpec, Shadow
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.logic import analysis
from mlops_operator.logic.rollout.state import (
    MAX_BLOCKED_VERSIONS,
    AnalysisRequest,
    Observations,
    PostPromotion,
    Role,
    RolloutStatus,
    Routes,
    WorkloadPlan,
    parse_time,
)
from mlops_operator.logic.rollout.workloads import serving_autoscaling
from mlops_operator.logic.status import Event

_DEFAULT_ANALYSIS, _DEFAULT_SHADOW = Analysis(), Shadow()

# Condition types
READY = "Ready"
PROGRESSING = "Progressing"
CANDIDATE_READY = "CandidateReady"
ANALYSIS_AVAILABLE = "AnalysisAvailable"
POST_PROMOTION = "PostPromotionAnalysis"  # True while a promoted version is watched; False says how it ended
WATCHING = "PostPromotionAnalysis"         # Progressing reason during the window

SERVICE_PORT = 8080  # the entry Service's port (named after the ModelDeployment)
WAITING_FOR_ROUTER = "WaitingForRouter"  # Progressing reason: stable is up, the entry point is not yet

_P = ModelDeploymentPhase
PENDING, PROGRESSING_PHASE, PAUSED = _P.PENDING.value, _P.PROGRESSING.value, _P.PAUSED.value
SUCCEEDED, DEGRADED, ROLLED_BACK, FAILED = _P.SUCCEEDED.value, _P.DEGRADED.value, _P.ROLLED_BACK.value, _P.FAILED.value


@dataclass
class Pass:
    """One decision in the making: the spec, the status being rewritten, the snapshot, the clock."""

    spec: ModelDeploymentSpec
    st: RolloutStatus
    obs: Observations
    now: datetime
    events: list[Event] = field(default_factory=list)
    verdict: analysis.RunVerdict | None = None  # the run recorded this pass, if any

    # ---------------------------------------------------------------------------------- settings
    @property
    def strategy_type(self) -> str:
        return self.spec.strategy.type if self.spec.strategy else "Recreate"

    @property
    def autoscaling(self) -> Autoscaling | None:
        """``spec.serving.autoscaling`` (builtin runtime only: KServe scales its own pods)."""
        return serving_autoscaling(self.spec)

    @property
    def replicas(self) -> int:
        """The full size of a version: ``spec.serving.replicas``, or with an autoscaler the stable version's
        current replicas, whatever the autoscaler made them (minReplicas before there is a stable one).

        Stable's own readiness is judged against the same number, so a stable version is not Degraded
        while its autoscaler is still on the way to a new minReplicas.
        """
        scaling = self.autoscaling
        if scaling is None:
            return self.spec.serving.replicas if self.spec.serving else 1
        info = self.obs.workloads.get(self.st.stable or "")
        return info.replicas if info is not None and info.replicas > 0 else scaling.min_replicas

    def weighted_replicas(self, weight: int) -> int:
        """Replicas for ``weight`` percent of the traffic: a share of ``replicas``, rounded up, at least one.

        Worked example: stable runs 7 pods under its autoscaler; a canary at 10 % gets ceil(0.7) = 1 pod,
        at 50 % ceil(3.5) = 4, at 100 % all 7.
        """
        return max(1, -(-self.replicas * weight // 100))

    @property
    def analysis_spec(self) -> Analysis:
        """The analysis settings (the API defaults when the spec has no ``analysis`` block)."""
        return self.spec.analysis or _DEFAULT_ANALYSIS

    @property
    def interval(self) -> timedelta:
        return parse_duration(self.analysis_spec.interval)

    @property
    def progress_deadline(self) -> timedelta:
        return parse_duration(self.spec.progress_deadline)

    @property
    def failure_limit(self) -> int:
        return self.analysis_spec.failure_limit

    @property
    def min_samples(self) -> int:
        return self.analysis_spec.min_samples

    @property
    def on_no_data(self) -> str:
        return self.analysis_spec.on_no_data

    @property
    def post_promotion(self) -> timedelta | None:
        """How long a promoted version stays under analysis (None: no post-promotion window)."""
        post = self.analysis_spec.post_promotion if self.spec.analysis else None
        return parse_duration(post.duration) if post else None

    @property
    def watching(self) -> bool:
        """A post-promotion window is in progress (no candidate; stable is the version it watches)."""
        return self.st.candidate is None and self.st.post is not None

    @property
    def measured_version(self) -> str | None:
        """The version analysis runs are taken for: the candidate, or the version a window watches."""
        if self.st.candidate:
            return self.st.candidate
        return self.st.post.version if self.st.post else None

    @property
    def measured_since(self) -> datetime | None:
        """Only runs after this count: the current step's start, or the window's."""
        if self.st.candidate:
            return self.st.step_started_at
        return self.st.post.started_at if self.st.post else None

    @property
    def checks(self) -> tuple[analysis.Check, ...]:
        """Checks gating this rollout: the spec's (defaults when it lists none) plus shadow agreement.

        Without an ``analysis`` block nothing is measured, except that a shadow is always judged on
        agreement (that is what shadowing is for). In a post-promotion window only the spec's checks
        run: nothing is mirrored any more, so there is no agreement to measure.
        """
        if self.watching:
            return analysis.checks_for(self.spec.analysis) if self.spec.analysis is not None else ()
        extra: tuple[analysis.Check, ...] = ()
        if self.strategy_type == "Shadow":
            shadow = (self.spec.strategy.shadow if self.spec.strategy else None) or _DEFAULT_SHADOW
            extra = (analysis.agreement_check(shadow.min_agreement),)
        if self.spec.analysis is None:
            return extra
        return analysis.checks_for(self.spec.analysis) + extra

    # ---------------------------------------------------------------------------------- status helpers
    def condition(self, type_: str, status: str | bool, reason: str, message: str) -> None:
        self.st.conditions = set_condition(self.st.conditions, type=type_, status=status, reason=reason,
                                           message=message, observed_generation=self.obs.generation, now=self.now)

    def drop_condition(self, type_: str) -> None:
        self.st.conditions = [c for c in self.st.conditions if c.get("type") != type_]

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def record_history(self, version: str, event: str, reason: str) -> None:
        self.st.history.append({"version": version, "event": event, "at": format_time(self.now), "reason": reason[:1024]})

    def candidate_workload_ready(self, replicas: int) -> bool:
        info = self.obs.workloads.get(self.st.candidate or "")
        return info is not None and info.ready_for(replicas)


class Strategy(Protocol):
    """What a strategy module provides (canary, bluegreen, shadow, recreate)."""

    def workloads(self, p: Pass) -> list[WorkloadPlan]: ...
    def routes(self, p: Pass) -> Routes | None: ...
    def analysis_target(self, p: Pass) -> AnalysisRequest | None: ...
    def progress(self, p: Pass) -> None: ...
    def manual_promote(self, p: Pass) -> None: ...
    def candidate_replicas_needed(self, p: Pass) -> int: ...
    def preview(self, p: Pass) -> str | None: ...


# ------------------------------------------------------------------------------------------ transitions


def start(p: Pass, version: str) -> None:
    """Begin rolling ``version`` out: everything about the previous candidate is forgotten."""
    st = p.st
    st.candidate, st.weight, st.step, st.step_started_at = version, 0, 0, p.now
    st.failed_checks, st.analysis = 0, []
    st.phase = PROGRESSING_PHASE
    p.drop_condition(CANDIDATE_READY)
    p.drop_condition(ANALYSIS_AVAILABLE)
    p.condition(CANDIDATE_READY, False, "Starting", f"waiting for {version} to become Ready")
    what = f"rolling out {version}" + (f" to replace {st.stable} ({p.strategy_type})" if st.stable else " (first version)")
    p.condition(PROGRESSING, True, "RolloutStarted", what)
    p.event("Normal", "RolloutStarted", what)


def enter_step(p: Pass, step: int, weight: int, message: str) -> None:
    p.st.step, p.st.weight, p.st.step_started_at = step, weight, p.now
    p.condition(PROGRESSING, True, "StepStarted", message)
    p.event("Normal", "StepStarted", message)


def _end(p: Pass) -> None:
    st = p.st
    st.candidate, st.weight, st.step, st.step_started_at = None, 0, None, None
    p.drop_condition(CANDIDATE_READY)


def promote(p: Pass, reason: str) -> None:
    """The candidate becomes stable and takes all traffic; the old stable is removed later.

    With ``postPromotion`` (and a previous stable to return to) the promotion opens the window instead of
    completing: the previous version stays warm and the failure count starts from zero.
    """
    st = p.st
    version, previous = st.candidate, st.stable
    assert version is not None
    p.record_history(version, "promoted", reason)
    st.stable = version
    _end(p)
    window = p.post_promotion
    watched = ""
    if previous and previous != version and window:
        st.post = PostPromotion(version, previous, p.now, p.now + window)
        st.failed_checks = 0
        watched = f"; analysed until {format_time(st.post.until)} with {previous} kept warm"
        st.phase = PROGRESSING_PHASE
        p.condition(POST_PROMOTION, True, "Watching", f"{version} promoted{watched}")
        p.condition(PROGRESSING, True, WATCHING, f"{version} promoted: {reason}{watched}")
    else:
        complete(p, "Promoted", f"{version} promoted: {reason}")
    p.event("Normal", "Promoted",
            f"{version} promoted" + (f" (replaces {previous})" if previous else "") + f": {reason}{watched}")


def rollback_promotion(p: Pass, reason: str, *, event: str = "rolledBack") -> None:
    """The watched version failed (or the user aborted it): all traffic returns to the previous version,
    which was kept warm, in this pass; the failed one is blocked from ``track`` like a rolled-back candidate."""
    st = p.st
    post = st.post
    assert post is not None
    version = post.version
    why = f"after promotion: {reason}"
    p.record_history(version, event, why)
    st.stable, st.post, st.aborted = post.previous, None, version
    block(p, version)
    st.phase = ROLLED_BACK
    title = "Aborted" if event == "aborted" else "RolledBack"
    p.condition(POST_PROMOTION, False, "Failed" if event != "aborted" else "Aborted", f"{version}: {reason}")
    p.condition(PROGRESSING, False, title, f"{version} {'aborted' if event == 'aborted' else 'rolled back'} "
                                           f"{why}; {post.previous} serves all traffic")
    p.event("Warning", title, f"{version} {'aborted' if event == 'aborted' else 'rolled back'} {why}; "
                              f"all traffic back on {post.previous}")


def end_window(p: Pass, reason: str) -> None:
    """The watched version passed its window (or the user accepted it): the previous version may go."""
    post = p.st.post
    assert post is not None
    p.st.post = None
    p.condition(POST_PROMOTION, False, "Passed", f"{post.version}: {reason}")
    p.event("Normal", "PostPromotionPassed", f"{post.version}: {reason}; {post.previous} is scaled down")
    complete(p, "Promoted", f"{post.version} serves all traffic ({reason})")


def revert_promotion(p: Pass, reason: str) -> None:
    """The desired version is the previous one again (a GitOps revert, or the new one is gone): switch
    back at once, since it is still warm. Not a failure of the watched version: nothing is blocked."""
    st = p.st
    post = st.post
    assert post is not None
    p.record_history(post.version, "aborted", f"after promotion: {reason}")
    st.stable, st.post = post.previous, None
    p.condition(POST_PROMOTION, False, "Superseded", f"{post.version}: {reason}")
    p.event("Normal", "Superseded", f"{post.version}: {reason}; all traffic back on {post.previous}")
    complete(p, "Superseded", f"{post.previous} serves all traffic again: {reason}")


def block(p: Pass, version: str) -> None:
    """``track`` never picks ``version`` again until ``mlops.dev/retry`` (newest last, bounded)."""
    blocked = [v for v in p.st.blocked if v != version] + [version]
    p.st.blocked = blocked[-MAX_BLOCKED_VERSIONS:]


def watch_request(p: Pass) -> AnalysisRequest | None:
    """The analysis request of a post-promotion window: the watched version, serving users as stable."""
    post = p.st.post
    if not p.watching or post is None:
        return None
    return AnalysisRequest(post.version, Role.STABLE, p.interval, carries_traffic=True)


def entry_problem(p: Pass) -> str | None:
    """Why clients cannot reach the stable version through the entry Service (None: they can)."""
    entry = p.obs.entry
    problem = entry.problem() if entry is not None else None
    return f"the entry point {p.obs.name}:{SERVICE_PORT} does not answer: {problem}" if problem else None


def complete(p: Pass, reason: str, message: str) -> None:
    """Stable serves all traffic: ``Succeeded`` once the entry point answers, ``Progressing`` until then.

    So a client that waits for ``Succeeded`` never meets a router that is still starting.
    """
    problem = entry_problem(p)
    if problem is None:
        p.st.phase = SUCCEEDED
        p.condition(PROGRESSING, False, reason, message)
    else:
        p.st.phase = PROGRESSING_PHASE
        p.condition(PROGRESSING, True, WAITING_FOR_ROUTER, f"{message}; waiting: {problem}")


def rollback(p: Pass, reason: str, *, event: str = "rolledBack") -> None:
    """Give the candidate up: traffic returns to stable; it is not retried until asked or superseded."""
    st = p.st
    version = st.candidate
    assert version is not None
    p.record_history(version, event, reason)
    st.aborted = version
    block(p, version)
    _end(p)
    st.phase = ROLLED_BACK if st.stable else FAILED
    title = "Aborted" if event == "aborted" else "RolledBack"
    p.condition(PROGRESSING, False, title, f"{version}: {reason}")
    p.event("Warning", title, f"{version} {'aborted' if event == 'aborted' else 'rolled back'}: {reason}")


def supersede(p: Pass, reason: str) -> None:
    """Drop the candidate because the desired version moved on (not a failure: never blocks a retry)."""
    version = p.st.candidate
    assert version is not None
    p.record_history(version, "aborted", reason)
    _end(p)
    p.condition(PROGRESSING, False, "Superseded", f"{version}: {reason}")
    p.event("Normal", "Superseded", f"{version}: {reason}")


# -------------------------------------------------------------------------------------- analysis timing


def latest_run_in_step(p: Pass) -> analysis.LatestRun | None:
    run = analysis.latest_run(p.st.analysis)
    since = p.measured_since
    if run is None or since is None or run.at <= since:
        return None
    return run


def next_run_at(p: Pass) -> datetime | None:
    """When the next analysis run of the current step (or post-promotion window) is due."""
    since = p.measured_since
    if since is None:
        return None
    run = latest_run_in_step(p)
    return (run.at if run else since) + p.interval


def run_due(p: Pass) -> bool:
    due = next_run_at(p)
    return due is not None and p.now >= due


def fresh_pass(p: Pass) -> bool:
    """The latest run passed, is newer than the step start and at most one interval old."""
    run = latest_run_in_step(p)
    return run is not None and run.passed and p.now - run.at <= p.interval


def deadline_exceeded(p: Pass) -> bool:
    cond = get_condition(p.st.conditions, CANDIDATE_READY)
    if cond is None or cond.get("status") != "False":
        return False
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and p.now - since > p.progress_deadline


def track_candidate_ready(p: Pass, replicas: int) -> bool:
    """Set ``CandidateReady`` from the observed workload (its transition time drives the deadline)."""
    ready = p.candidate_workload_ready(replicas)
    info = p.obs.workloads.get(p.st.candidate or "")
    seen = f"{info.ready_replicas}/{replicas}" if info else "no pods yet"
    why = f" ({info.problem})" if info and info.problem and not ready else ""
    p.condition(CANDIDATE_READY, ready, "PodsReady" if ready else "PodsNotReady", f"{p.st.candidate}: {seen} Ready{why}")
    return ready


def record_run(p: Pass, request: AnalysisRequest | None) -> analysis.RunVerdict | None:
    """Judge this pass's measurements, append them to status and count a failure if it is one.

    Results are taken only for the current candidate (or the version a post-promotion window watches),
    while a run is due for it: a measurement taken for a superseded candidate, or a second one within the
    same interval, is ignored.
    """
    results = p.obs.analysis
    if request is None or results is None or results.version != p.measured_version or not run_due(p):
        return None
    verdict = analysis.evaluate(p.checks, results.results, p.min_samples)
    p.st.analysis.extend(analysis.run_entries(verdict, p.now, results.window))
    p.verdict = verdict
    outcome = verdict.outcome
    if outcome is analysis.Outcome.ERROR:
        p.condition(ANALYSIS_AVAILABLE, False, "MetricsUnavailable", verdict.summary())
    else:
        p.condition(ANALYSIS_AVAILABLE, True, "Measured", f"latest run {outcome.value}")
    if verdict.counts_as_failure(p.on_no_data, request.carries_traffic):
        p.st.failed_checks += 1
        p.event("Warning", "AnalysisFailed",
                f"{p.measured_version}: check failed ({p.st.failed_checks}/{p.failure_limit + 1}): {verdict.summary()}")
    return verdict


def failure_limit_reached(p: Pass) -> bool:
    return p.st.failed_checks > p.failure_limit


def describe(p: Pass, message: str, *, paused: bool = False) -> None:
    """Keep the rollout going (or paused) with ``message`` as the Progressing condition."""
    p.st.phase = PAUSED if paused else PROGRESSING_PHASE
    p.condition(PROGRESSING, True, "Paused" if paused else "RolloutInProgress", message)


def wait_metrics(p: Pass) -> bool:
    """Before traffic moves, analysis must be possible: a metrics provider that is down holds at 0 %."""
    if not p.checks or p.obs.metrics_online:
        return False
    why = "metrics provider unreachable" if p.obs.metrics_online is False else "metrics provider not checked yet"
    p.condition(ANALYSIS_AVAILABLE, False, "MetricsUnavailable", f"{why}: holding {p.st.candidate} at 0%")
    describe(p, f"{p.st.candidate} Ready; holding at 0% until metrics can be measured ({why})")
    return True

