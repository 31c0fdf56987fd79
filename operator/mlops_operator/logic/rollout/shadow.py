"""Shadow: mirror a share of requests to the candidate (its answers discarded), then promote or abort.

Step 0: wait for the candidate to be Ready. Step 1: mirroring for ``duration``; every interval a run
measures the shadow's own checks and the agreement of its predictions with stable's (``minAgreement``).
Users are never affected while shadowing, so an unreachable metrics provider holds instead of counting
failures; failed checks beyond ``failureLimit`` still abort early. When the duration is over, the first
run after it decides: a pass promotes (``autoPromote``) or waits, Paused, for ``mlops.dev/promote``; a
failure aborts; no data keeps holding (it never passes). ``agreementTolerance`` travels with the routes
to the router, which compares numeric predictions within it (a regression model's shadow can agree).
"""

from __future__ import annotations

from mlops_operator.api.v1alpha1.modeldeployment import Shadow
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.logic import analysis
from mlops_operator.logic.rollout import common
from mlops_operator.logic.rollout.common import Pass
from mlops_operator.logic.rollout.state import AnalysisRequest, Role, Routes, WorkloadPlan

WAITING, MIRRORING = 0, 1
_DEFAULT = Shadow()


def settings(p: Pass) -> Shadow:
    return (p.spec.strategy.shadow if p.spec.strategy else None) or _DEFAULT


def ends_at(p: Pass):
    if (p.st.step or 0) != MIRRORING or p.st.step_started_at is None:
        return None
    return p.st.step_started_at + parse_duration(settings(p).duration)


def candidate_replicas_needed(p: Pass) -> int:
    return p.replicas


def workloads(p: Pass) -> list[WorkloadPlan]:
    return [WorkloadPlan(p.st.stable, Role.STABLE, p.replicas), WorkloadPlan(p.st.candidate, Role.SHADOW, p.replicas)]


def routes(p: Pass) -> Routes:
    if (p.st.step or 0) != MIRRORING:
        return Routes(p.st.stable)
    sh = settings(p)
    return Routes(p.st.stable, shadow=p.st.candidate, mirror_percent=sh.mirror_percent,
                  shadow_tolerance=sh.agreement_tolerance)


def preview(p: Pass) -> str | None:
    return None


def analysis_target(p: Pass) -> AnalysisRequest | None:
    if (p.st.step or 0) != MIRRORING or p.st.candidate is None:
        return None
    return AnalysisRequest(p.st.candidate, Role.SHADOW, p.interval, carries_traffic=False)


def progress(p: Pass) -> None:
    sh, cand = settings(p), p.st.candidate
    if (p.st.step or 0) == WAITING:
        if not p.candidate_workload_ready(p.replicas):
            common.describe(p, f"waiting for {cand} to become Ready before mirroring")
            return
        common.enter_step(p, MIRRORING, 0, f"mirroring {sh.mirror_percent}% of requests to {cand} for {sh.duration}")
        return
    end = ends_at(p)
    if end is not None and p.now < end:
        common.describe(p, f"mirroring {sh.mirror_percent}% of requests to {cand} until {end.isoformat()}")
        return
    if p.verdict is not None and p.verdict.outcome is analysis.Outcome.FAILED:
        common.rollback(p, f"shadow checks failed after {sh.duration}: {p.verdict.summary()}")
        return
    if not common.fresh_pass(p):
        common.describe(p, f"{cand}: shadow period over; waiting for a passing run (agreement >= {sh.min_agreement})")
        return
    if sh.auto_promote:
        common.promote(p, f"shadow agreement and checks passed after {sh.duration}")
    else:
        common.describe(p, f"{cand} passed shadowing: annotate mlops.dev/promote to switch", paused=True)


def manual_promote(p: Pass) -> None:
    common.promote(p, "promoted by user after shadowing")
