"""Blue/green: bring the candidate up beside stable behind a preview Service, then switch at once.

Step 0 (preview): the candidate runs ``previewReplicas`` pods reachable only through the preview
Service; pre-promotion analysis measures it there (so it needs preview traffic: with no requests it
holds, never passes). When the latest run is a fresh pass (or no checks are configured), ``autoPromote``
approves the switch; otherwise the rollout waits, Paused, for ``mlops.dev/promote``.
Step 1 (approved): the candidate scales to full replicas; once all are Ready, all traffic switches.
The old version stays up ``scaleDownDelay`` after the switch (instant switch back by hand), then goes.
``previewReplicas: 0`` skips the preview: no pods, no analysis, straight to approval.
"""

from __future__ import annotations

from mlops_operator.api.v1alpha1.modeldeployment import BlueGreen
from mlops_operator.logic.rollout import common
from mlops_operator.logic.rollout.common import Pass
from mlops_operator.logic.rollout.state import AnalysisRequest, Role, Routes, WorkloadPlan

PREVIEW, SWITCHING = 0, 1
_DEFAULT = BlueGreen()


def settings(p: Pass) -> BlueGreen:
    return (p.spec.strategy.blue_green if p.spec.strategy else None) or _DEFAULT


def candidate_replicas_needed(p: Pass) -> int:
    return settings(p).preview_replicas if (p.st.step or 0) == PREVIEW else p.replicas


def workloads(p: Pass) -> list[WorkloadPlan]:
    return [WorkloadPlan(p.st.stable, Role.STABLE, p.replicas),
            WorkloadPlan(p.st.candidate, Role.PREVIEW, candidate_replicas_needed(p))]


def routes(p: Pass) -> Routes:
    return Routes(p.st.stable)  # production traffic never reaches the candidate before the switch


def preview(p: Pass) -> str | None:
    return p.st.candidate


def analysis_target(p: Pass) -> AnalysisRequest | None:
    if (p.st.step or 0) != PREVIEW or settings(p).preview_replicas == 0 or p.st.candidate is None:
        return None
    if not p.candidate_workload_ready(settings(p).preview_replicas):
        return None
    return AnalysisRequest(p.st.candidate, Role.PREVIEW, p.interval, carries_traffic=False)


def _approve(p: Pass, why: str) -> None:
    common.enter_step(p, SWITCHING, 0, f"{p.st.candidate}: {why}; scaling to {p.replicas} replicas for the switch")


def progress(p: Pass) -> None:
    bg, cand = settings(p), p.st.candidate
    if (p.st.step or 0) == PREVIEW:
        if bg.preview_replicas > 0:
            if not p.candidate_workload_ready(bg.preview_replicas):
                common.describe(p, f"waiting for {cand} preview ({bg.preview_replicas} pods) to become Ready")
                return
            if p.checks and not common.fresh_pass(p):
                common.describe(p, f"{cand}: pre-promotion analysis on the preview Service")
                return
        if not bg.auto_promote:
            common.describe(p, f"{cand} ready for promotion: annotate mlops.dev/promote to switch", paused=True)
            return
        _approve(p, "pre-promotion checks passed")
        return
    if not p.candidate_workload_ready(p.replicas):
        common.describe(p, f"{cand}: waiting for {p.replicas} Ready pods before the switch")
        return
    common.promote(p, "blue/green switch")


def manual_promote(p: Pass) -> None:
    if (p.st.step or 0) == PREVIEW:
        _approve(p, "promotion requested by user")
    else:
        common.promote(p, "blue/green switch requested by user")
