"""Canary: move traffic to the candidate in steps, each held for its pause and gated by analysis.

Per pass, at most one of: shift from 0 % to the first step (only once the candidate is Ready and the
metrics provider answers: "Prometheus down before a rollout holds at 0 %"); hold; advance one step;
promote after the last step. A step is complete when its pause has elapsed, the candidate is Ready and,
when checks are configured, the latest run is a fresh pass (see ``common``). Both versions run full
replicas, so a promotion never waits for pods and a rollback never needs stable to scale back up. With an
autoscaler on stable (``serving.autoscaling``) the candidate runs the share of stable's current replicas
that the next weight needs (``candidate_replicas_needed``), and all of them before the promotion.

Worked example, steps [10 %/1m, 50 %/2m], interval 30s: t=0 Ready -> 10 %; runs at 0:30, 1:00 pass ->
t=1:00 50 %; runs at 1:30 .. 3:00 -> t=3:00 promote. A failed run at 1:30 adds to failedChecks; beyond
failureLimit the pass rolls back instead.
"""

from __future__ import annotations

from datetime import timedelta

from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.logic.rollout import common
from mlops_operator.logic.rollout.common import Pass
from mlops_operator.logic.rollout.state import AnalysisRequest, Role, Routes, WorkloadPlan


def _steps(p: Pass) -> list:
    canary = p.spec.strategy.canary if p.spec.strategy else None
    return list(canary.steps) if canary else []


def step_pause(p: Pass, index: int) -> timedelta:
    """How long step ``index`` holds its weight (one analysis interval when it names no pause)."""
    steps = _steps(p)
    pause = steps[index].pause if index < len(steps) else None
    return parse_duration(pause) if pause else p.interval


def step_ends_at(p: Pass):
    if p.st.weight == 0 or p.st.step_started_at is None:
        return None
    return p.st.step_started_at + step_pause(p, p.st.step or 0)


def next_weight(p: Pass) -> int:
    """The weight the candidate holds or moves to next: the first step's, the next step's, or 100 (promotion)."""
    steps = _steps(p)
    if p.st.weight == 0:
        return steps[0].weight if steps else 100
    index = (p.st.step or 0) + 1
    return steps[index].weight if index < len(steps) else 100


def candidate_replicas_needed(p: Pass) -> int:
    """Full replicas; with an autoscaler on stable, its current replicas' share for the next weight, so the
    candidate's pods are Ready before the traffic that needs them arrives (all of them before promotion)."""
    return p.weighted_replicas(next_weight(p)) if p.autoscaling else p.replicas


def workloads(p: Pass) -> list[WorkloadPlan]:
    return [WorkloadPlan(p.st.stable, Role.STABLE, p.replicas),
            WorkloadPlan(p.st.candidate, Role.CANDIDATE, candidate_replicas_needed(p))]


def routes(p: Pass) -> Routes:
    return Routes(p.st.stable, p.st.candidate, p.st.weight)


def preview(p: Pass) -> str | None:
    return None


def analysis_target(p: Pass) -> AnalysisRequest | None:
    if p.st.weight <= 0 or p.st.candidate is None:
        return None
    return AnalysisRequest(p.st.candidate, Role.CANDIDATE, p.interval, carries_traffic=True)


def progress(p: Pass) -> None:
    st, steps = p.st, _steps(p)
    total = len(steps)
    if st.weight == 0:
        if not p.candidate_workload_ready(candidate_replicas_needed(p)):
            common.describe(p, f"waiting for {st.candidate} to become Ready (0% of traffic)")
            return
        if common.wait_metrics(p):
            return
        common.enter_step(p, 0, steps[0].weight, f"{st.candidate}: step 1/{total} at {steps[0].weight}%")
        return
    index = min(st.step or 0, total - 1)
    where = f"{st.candidate}: step {index + 1}/{total} at {st.weight}%"
    ends = step_ends_at(p)
    if ends is not None and p.now < ends:
        common.describe(p, f"{where}; holding until {ends.isoformat()}")
        return
    if not p.candidate_workload_ready(candidate_replicas_needed(p)):
        common.describe(p, f"{where}; waiting for all candidate pods to be Ready")
        return
    if p.checks and not common.fresh_pass(p):
        common.describe(p, f"{where}; waiting for a passing analysis run newer than the step")
        return
    if index + 1 < total:
        nxt = steps[index + 1].weight
        common.enter_step(p, index + 1, nxt, f"{st.candidate}: step {index + 2}/{total} at {nxt}%")
    else:
        common.promote(p, f"all {total} canary steps passed")


def manual_promote(p: Pass) -> None:
    common.promote(p, f"promoted by user at {p.st.weight}%")
