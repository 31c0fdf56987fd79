"""What follows from the decided status every pass: deletions, stages, Ready, endpoint, next wake-up. Pure.

Deletion is where "traffic returns to stable first, then the candidate is scaled down" is enforced: a
version's pods are removed only when it is in no plan, and the routes *observed* at the start of the
pass (the durable config and every router replica) no longer reference it. A rollback pass therefore
moves traffic, and a later pass (which observes the new routes) deletes; a crash in between resumes
with traffic already on stable. After a blue/green switch the old version also waits ``scaleDownDelay``.
During a post-promotion window the previous stable version is planned at full replicas (kept warm, so a
rollback needs no pods to start), and goes the same way once the window has passed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.logic.rollout import bluegreen, canary, common, shadow
from mlops_operator.logic.rollout.common import SERVICE_PORT, Pass, Strategy
from mlops_operator.logic.rollout.state import Plan, Role, Routes, WorkloadPlan, parse_time

ENTRY_RECHECK_SECONDS = 3.0  # how soon to look again while the entry point does not answer


def planned_workloads(p: Pass, strategy: Strategy | None) -> list[WorkloadPlan]:
    """What must run; with an autoscaler the stable version's replicas are left to it (None)."""
    plans = _workloads(p, strategy)
    if p.autoscaling is None:
        return plans
    return [replace(w, replicas=None) if w.version == p.st.stable else w for w in plans]


def _workloads(p: Pass, strategy: Strategy | None) -> list[WorkloadPlan]:
    if p.st.candidate and strategy is not None:
        return strategy.workloads(p)
    plans = [WorkloadPlan(p.st.stable, Role.STABLE, p.replicas)] if p.st.stable else []
    if p.watching and p.st.post is not None and p.st.post.previous != p.st.stable:
        plans.append(WorkloadPlan(p.st.post.previous, Role.STABLE, p.replicas))  # warm, routed nothing
    return plans


def planned_routes(p: Pass, strategy: Strategy | None) -> Routes | None:
    if p.st.candidate and strategy is not None:
        return strategy.routes(p)
    return Routes(p.st.stable) if p.st.stable else None


def keep_until(p: Pass) -> datetime | None:
    """After a blue/green switch, the replaced version stays up until this time."""
    if p.strategy_type != "BlueGreen" or not p.st.history or p.st.history[-1].get("event") != "promoted":
        return None
    at = parse_time(p.st.history[-1].get("at"))
    return at + parse_duration(bluegreen.settings(p).scale_down_delay) if at else None


def deletions(p: Pass, workloads: list[WorkloadPlan], routes: Routes | None) -> tuple[str, ...]:
    planned = {w.version for w in workloads}
    routed = routes.referenced() if routes else frozenset()
    observed = p.obs.routes
    until = keep_until(p)
    out = []
    for version in sorted(p.obs.workloads):
        if version in planned or version in routed:
            continue
        if observed is None or version in observed.referenced:
            continue  # traffic first: wait until no router sends it anything
        if until is not None and p.now < until:
            continue
        out.append(version)
    return tuple(out)


def stages(p: Pass) -> dict[str, str]:
    """ModelVersion stages to write: Production (stable, and the warm previous version during a
    post-promotion window: it may serve again at any moment, so retention must not prune it), Staging
    (candidate), Archived (replaced/given up)."""
    wanted: dict[str, str] = {entry["version"]: "Archived" for entry in p.st.history if entry.get("version")}
    if p.watching and p.st.post is not None:
        wanted[p.st.post.previous] = "Production"
    if p.st.candidate:
        wanted[p.st.candidate] = "Staging"
    if p.st.stable:
        wanted[p.st.stable] = "Production"
    return {v: s for v, s in wanted.items() if v in p.obs.versions and p.obs.versions[v].stage != s}


def set_ready(p: Pass) -> None:
    stable = p.st.stable
    info = p.obs.workloads.get(stable or "")
    if stable is None:
        p.condition(common.READY, False, "NoStableVersion", "no version serves yet")
    elif info is None or not info.ready_for(p.replicas):
        seen = f"{info.ready_replicas}/{p.replicas}" if info else "no pods"
        p.condition(common.READY, False, "StableNotReady", f"{stable}: {seen} Ready")
    elif (problem := common.entry_problem(p)) is not None:
        p.condition(common.READY, False, "RouterNotReady", f"{stable} is Ready but {problem}")
    else:
        p.condition(common.READY, True, "Serving", f"{stable} serves ({info.ready_replicas}/{p.replicas} Ready)")


def endpoint(p: Pass) -> dict | None:
    """Where clients call: published once the entry point has answered, then kept (``Degraded`` and the
    ``Ready`` condition say when it stops answering; the address itself does not change)."""
    if not p.st.stable or ("endpoint" not in p.st.raw and common.entry_problem(p) is not None):
        return None
    name, ns = p.obs.name, p.obs.namespace
    return {"url": f"http://{name}.{ns}.svc:{SERVICE_PORT}", "service": name, "port": SERVICE_PORT,
            "modelName": p.spec.model}


def wake_times(p: Pass, strategy: Strategy | None) -> list[datetime]:
    """Moments at which something will be decided without any change in the world."""
    times: list[datetime | None] = [keep_until(p)]
    if p.watching and p.st.post is not None and not p.spec.paused:
        times += [p.st.post.until, common.next_run_at(p) if p.checks else None]
    if p.st.candidate and strategy is not None and not p.spec.paused:
        times.append(common.next_run_at(p) if strategy.analysis_target(p) and p.checks else None)
        times.append(canary.step_ends_at(p) if strategy is canary else None)
        times.append(shadow.ends_at(p) if strategy is shadow else None)
        ready_since = get_condition(p.st.conditions, common.CANDIDATE_READY) or {}
        if ready_since.get("status") == "False":
            since = parse_time(ready_since.get("lastTransitionTime"))
            times.append(since + p.progress_deadline if since else None)
    return [t for t in times if t is not None]


def finish(p: Pass, strategy: Strategy | None) -> Plan:
    workloads = planned_workloads(p, strategy)
    routes = planned_routes(p, strategy)
    set_ready(p)
    status = p.st.to_dict()
    ep = endpoint(p)
    if ep:
        status["endpoint"] = ep
    future = [t for t in wake_times(p, strategy) if t > p.now]
    requeue = max(1.0, (min(future) - p.now).total_seconds()) if future else None
    if p.st.stable and common.entry_problem(p) is not None:  # a router pod turns Ready within seconds
        requeue = min(requeue or ENTRY_RECHECK_SECONDS, ENTRY_RECHECK_SECONDS)
    return Plan(status=status, workloads=tuple(workloads), routes=routes,
                preview=strategy.preview(p) if (strategy and p.st.candidate) else None,
                delete=deletions(p, workloads, routes), stages=stages(p), events=p.events, requeue_after=requeue)
