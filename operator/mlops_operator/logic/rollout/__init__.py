"""Rollout decisions for a ModelDeployment: ``decide(spec, status, observations, now) -> Plan``. Pure.

One call is one pass, and a pass takes at most one step (Argo Rollouts' reconcile chain): resolve the
desired version, act on a new manual request, else either supersede a candidate that is no longer
desired, start a rollout, or let the strategy take its next step (Recreate, BlueGreen, Canary, Shadow:
one module each). Everything a later pass needs is in the returned status; nothing is remembered in
memory, so a restarted operator continues exactly where the status says.

The handler calls ``analysis_request`` first: if a run is due it measures (I/O) and passes the results in
``Observations.analysis``; ``decide`` records them. Order within a rollout pass: candidate readiness ->
spec.paused -> progress deadline -> record the run -> failure limit -> the strategy's step.

After a promotion with ``spec.analysis.postPromotion`` the pass watches the promoted version instead
(``_watch``): the analysis keeps running against it while the previous stable stays warm; failures beyond
``failureLimit`` move all traffic back at once (``RolledBack``), and when the window is over the previous
version goes and the phase is ``Succeeded``. A new desired version waits for the window to end.

The entry point (the builtin router's pods behind the Service named after the ModelDeployment) plays no
part in a rollout's steps or analysis; it decides only whether a rollout is complete: ``Succeeded`` and
``Ready=True`` mean a request to the entry Service is answered. Until its first router pod is Ready the
phase stays ``Progressing`` (reason ``WaitingForRouter``); a ``Succeeded`` one that loses every Ready
router pod is ``Degraded``, as it is when stable's own pods go.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import format_time
from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.logic.references import apply_invalid_spec
from mlops_operator.logic.rollout import bluegreen, canary, common, housekeeping, recreate, requests, shadow, versions
from mlops_operator.logic.rollout.common import Pass, Strategy
from mlops_operator.logic.rollout.state import (
    AnalysisRequest,
    Observations,
    Plan,
    RolloutStatus,
    truncate,
)

STRATEGIES: dict[str, Strategy] = {"Recreate": recreate, "BlueGreen": bluegreen, "Canary": canary, "Shadow": shadow}

__all__ = ["Plan", "analysis_request", "decide", "metrics_needed", "STRATEGIES"]


def _pass(spec: ModelDeploymentSpec, status: Mapping[str, Any] | None, obs: Observations, now: datetime) -> Pass:
    return Pass(spec, RolloutStatus.from_dict(status), obs, truncate(now))


def strategy_for(p: Pass) -> Strategy:
    """The first version is always rolled out as Recreate: there is no stable to shift traffic from."""
    return STRATEGIES[p.strategy_type] if p.st.stable else recreate


def _request(p: Pass, strategy: Strategy) -> AnalysisRequest | None:
    if p.measured_version is None or p.spec.paused or not p.checks or not common.run_due(p):
        return None
    request = strategy.analysis_target(p) if p.st.candidate else common.watch_request(p)
    return replace(request, checks=p.checks) if request else None


def metrics_needed(spec: ModelDeploymentSpec, status: Mapping[str, Any] | None, obs: Observations,
                   now: datetime) -> bool:
    """Whether this pass must know if the metrics provider answers (a rollout with checks, or a
    post-promotion window, is under way)."""
    p = _pass(spec, status, obs, now)
    return p.measured_version is not None and bool(p.checks)


def analysis_request(spec: ModelDeploymentSpec, status: Mapping[str, Any] | None, obs: Observations,
                     now: datetime) -> AnalysisRequest | None:
    """What to measure before ``decide`` (None: no run is due this pass)."""
    p = _pass(spec, status, obs, now)
    return _request(p, strategy_for(p))


def decide(spec: ModelDeploymentSpec, status: Mapping[str, Any] | None, obs: Observations, now: datetime) -> Plan:
    """The one step of this pass and the world that goes with it (see the module docstring)."""
    p = _pass(spec, status, obs, now)
    st = p.st
    st.raw["observedGeneration"] = obs.generation
    desired = versions.resolve(spec, obs, st.blocked)
    st.desired = desired.version
    st.conditions, events = apply_invalid_spec(st.conditions, desired.problems, generation=obs.generation, now=p.now)
    p.events.extend(events)
    if st.aborted and desired.version and st.aborted != desired.version and st.aborted not in desired.skipped:
        st.aborted = None  # the desired version moved on: the aborted one no longer blocks anything
    before = (st.candidate, st.stable, st.step, st.aborted, st.post, tuple(st.blocked))
    requests.handle(p, strategy_for(p) if st.candidate else None)
    if (st.candidate, st.stable, st.step, st.aborted, st.post, tuple(st.blocked)) == before:
        _step(p, desired)
    return housekeeping.finish(p, strategy_for(p) if st.candidate else None)


def _step(p: Pass, desired: versions.Desired) -> None:
    st = p.st
    if st.candidate:
        if desired.version != st.candidate:
            why = f"desired version is now {desired.version}" if desired.version else desired.waiting
            common.supersede(p, why)
            return
        _progress(p, strategy_for(p))
        return
    if st.post is not None:
        _watch(p, desired)
        return
    new = desired.version
    if new and new != st.stable and new != st.aborted:
        if p.spec.paused:
            common.describe(p, f"spec.paused: {new} is not rolled out until resumed", paused=True)
            return
        common.start(p, new)
        return
    _steady(p, desired)


def _progress(p: Pass, strategy: Strategy) -> None:
    common.track_candidate_ready(p, strategy.candidate_replicas_needed(p))
    if p.spec.paused:
        common.describe(p, f"spec.paused: {p.st.candidate} held at {p.st.weight}%", paused=True)
        return
    if common.deadline_exceeded(p):
        common.rollback(p, f"not Ready within progressDeadline {p.spec.progress_deadline}")
        return
    verdict = common.record_run(p, _request(p, strategy))
    if common.failure_limit_reached(p):
        summary = verdict.summary() if verdict else "see status.analysis"
        common.rollback(p, f"{p.st.failed_checks} failed checks (failureLimit {p.failure_limit}): {summary}")
        return
    strategy.progress(p)


def _watch(p: Pass, desired: versions.Desired) -> None:
    """One pass of a post-promotion window: revert, hold, roll back, pass, or keep watching."""
    st, post = p.st, p.st.post
    assert post is not None
    if st.stable != post.version:  # only a status edited by hand gets here: nothing safe to watch
        st.post = None
        return
    if desired.version == post.previous:
        common.revert_promotion(p, f"desired version is {post.previous} again")
        return
    until = format_time(post.until)
    if p.spec.paused:
        common.describe(p, f"spec.paused: post-promotion analysis of {post.version} held ({post.previous} kept "
                           f"warm)", paused=True)
        return
    if _down(p, post.version) and not _down(p, post.previous):
        common.rollback_promotion(p, f"{post.version} has no Ready pod while {post.previous} has")
        return
    verdict = common.record_run(p, _request(p, strategy_for(p)))
    if common.failure_limit_reached(p):
        summary = verdict.summary() if verdict else "see status.analysis"
        common.rollback_promotion(p, f"{st.failed_checks} failed checks (failureLimit {p.failure_limit}): {summary}")
        return
    if p.now >= post.until:
        if p.checks and not _measured_lately(p, post.until):
            describe_watch(p, f"{post.version}: window over; waiting for a run covering its last interval "
                              f"({post.previous} kept warm)")
            return
        common.end_window(p, f"post-promotion analysis passed ({st.failed_checks} failed checks, failureLimit "
                             f"{p.failure_limit})")
        return
    waiting = f"; {desired.version} waits for the window to end" if desired.version not in (None, post.version) else ""
    describe_watch(p, f"{post.version} promoted; analysed until {until} with {post.previous} kept warm{waiting}")


def describe_watch(p: Pass, message: str) -> None:
    p.st.phase = common.PROGRESSING_PHASE
    p.condition(common.PROGRESSING, True, common.WATCHING, message)


def _measured_lately(p: Pass, until: datetime) -> bool:
    """A run was recorded within the window's last interval (after a restart past its end: not yet)."""
    run = common.latest_run_in_step(p)
    return run is not None and run.at >= until - p.interval


def _down(p: Pass, version: str) -> bool:
    info = p.obs.workloads.get(version)
    return info is None or info.ready_replicas < 1


def _steady(p: Pass, desired: versions.Desired) -> None:
    st = p.st
    if st.stable is None:
        st.phase = common.FAILED if st.aborted else common.PENDING
        why = f"{st.aborted} failed and nothing else is Ready" if st.aborted else desired.waiting or "waiting for a version"
        p.condition(common.PROGRESSING, False, "Failed" if st.aborted else "WaitingForVersion", why)
        return
    if st.aborted and (st.aborted == desired.version or st.aborted in desired.skipped):
        st.phase = common.ROLLED_BACK  # stays until the user retries or a new version is desired
        return
    info = p.obs.workloads.get(st.stable)
    if info is None or not info.ready_for(p.replicas):
        st.phase = common.DEGRADED  # the Ready condition says why
        return
    if st.phase != common.PROGRESSING_PHASE and common.entry_problem(p) is not None:
        st.phase = common.DEGRADED  # it answered before (Succeeded): losing the entry point is degradation
        return
    common.complete(p, "Succeeded", f"{st.stable} serves all traffic")
