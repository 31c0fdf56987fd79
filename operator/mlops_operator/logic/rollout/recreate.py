"""Recreate: the new version replaces the old one as soon as it is Ready; no analysis, no gradual shift.

Unlike Kubernetes' Recreate, the old version keeps serving until the new one is Ready: a model server
whose artifact fails verification never becomes Ready, and that must cost a rollback, not an outage.
The very first version of a ModelDeployment always goes this way (there is nothing to compare it with).
"""

from __future__ import annotations

from mlops_operator.logic.rollout import common
from mlops_operator.logic.rollout.common import Pass
from mlops_operator.logic.rollout.state import AnalysisRequest, Role, Routes, WorkloadPlan


def candidate_replicas_needed(p: Pass) -> int:
    return p.replicas


def workloads(p: Pass) -> list[WorkloadPlan]:
    plans = [WorkloadPlan(p.st.stable, Role.STABLE, p.replicas)] if p.st.stable else []
    if p.st.candidate:
        plans.append(WorkloadPlan(p.st.candidate, Role.CANDIDATE, p.replicas))
    return plans


def routes(p: Pass) -> Routes | None:
    return Routes(p.st.stable) if p.st.stable else None


def preview(p: Pass) -> str | None:
    return None


def analysis_target(p: Pass) -> AnalysisRequest | None:
    return None


def progress(p: Pass) -> None:
    if p.candidate_workload_ready(p.replicas):
        common.promote(p, "Ready" + (" (Recreate)" if p.st.stable else " (first version)"))
    else:
        common.describe(p, f"waiting for {p.st.candidate} to become Ready")


def manual_promote(p: Pass) -> None:
    common.promote(p, "promoted by user")
