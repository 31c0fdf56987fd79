"""The pass loop every kind shares: decide one step, write status if it changed, repeat while it did.

Why a loop of single steps (Argo Rollouts' ``reconcileX() (changed, err)`` chain): each step's result is
persisted in status before the next step reads the world again, so a crash between two steps resumes at
the right one and no step ever acts on an outcome that was not recorded. Consecutive steps run
back-to-back within one tick (bounded by ``max_passes``); when nothing changes, the object waits for the
next timer tick, which is what makes every check level-triggered (a reference that appears later, a Job
that finishes, S3 that comes back).

Status writes are merge patches of the top-level fields that changed, carrying the resourceVersion the
decision was made on: a 409 means someone else wrote in between, so the object is re-read and the step
decided again instead of overwriting newer state. Events are posted only after the write succeeded, so a
retried step never announces a transition twice. Every status written gets the ``Reconciling`` and
``Stalled`` conditions generic tools read (``logic.status.with_kstatus``), whichever step produced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

import kopf
from pydantic import ValidationError

from mlops_operator import instruments
from mlops_operator.api.v1alpha1.common import GROUP, VERSION, get_condition, plain
from mlops_operator.handlers.observe import create_job, job_settings
from mlops_operator.logic.status import (
    RETRYING,
    Event,
    backoff_delay,
    mark_condition,
    mark_retrying,
    status_delta,
    with_kstatus,
)
from mlops_operator.operator_settings import OperatorSettings, operator_settings
from mlops_operator.providers import kube


@dataclass
class Outcome:
    """What one step decided: the whole new status, and what else happened or should happen."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    acted: bool = False               # changed the world beyond status (e.g. created a Job)
    retry_after: float | None = None  # transient trouble: try again after this back-off
    requeue_after: float | None = None  # nothing wrong, but decide again within this many seconds


@dataclass(frozen=True)
class Context:
    """What a step needs besides the object: configuration, the clock, a logger."""

    kind: str
    plural: str
    settings: OperatorSettings
    now: datetime
    logger: logging.Logger | logging.LoggerAdapter
    failures: int  # consecutive transient failures so far (drives the back-off)
    indices: Mapping[str, Any] = field(default_factory=dict)  # the Kopf indices the kind registered with, by id

    def backoff(self) -> float:
        """Exponential back-off from ``retry_base_delay`` up to ``retry_max_delay``: never a hot loop."""
        return backoff_delay(self.failures, self.settings.retry_base_delay, self.settings.retry_max_delay)


Step = Callable[[dict[str, Any], Context], Awaitable[Outcome]]

KUBE_REASONS = {kube.Forbidden: "Forbidden", kube.Conflict: "Conflict", kube.Invalid: "ApiRejected",
                kube.Unavailable: "ApiUnavailable"}


def kube_trouble(obj: Mapping[str, Any], ctx: Context, exc: kube.KubeError) -> Outcome:
    """An API failure met while observing or acting: a ``Retrying`` condition and a back-off.

    ``Forbidden`` lands here too: RBAC that is missing now may be restored, and a condition tells the
    user what is wrong instead of a crash loop in the operator's log.
    """
    reason = KUBE_REASONS.get(type(exc), "ApiError")
    status, events = mark_retrying(obj.get("status") or {}, reason, str(exc),
                                   generation=obj["metadata"].get("generation"), now=ctx.now)
    return Outcome(status=status, events=events, retry_after=ctx.backoff())


def unparseable(obj: Mapping[str, Any], ctx: Context, exc: ValidationError) -> Outcome:
    """The object does not match the operator's models (a CRD older/newer than the operator)."""
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    status = mark_condition(obj.get("status") or {}, "InvalidSpec", "True", "SchemaMismatch",
                            f"the operator cannot read this object: {details}",
                            generation=obj["metadata"].get("generation"), now=ctx.now)
    return Outcome(status=status)


async def job_step(kind: str, obj: dict[str, Any], ctx: Context, model: Any,
                   observe: Callable[[Any, dict[str, Any]], Awaitable[Any]], decide: Callable[..., Any]) -> Outcome:
    """One pass of a kind driven by runtime Jobs (ModelVersion, FeatureSet, BatchPrediction): parse, observe what the
    decision needs, decide, create the Job it asks for (AlreadyExists is success)."""
    try:
        parsed = model.from_body(obj)
    except ValidationError as exc:
        return unparseable(obj, ctx, exc)
    status = obj.get("status") or {}
    created = False
    try:
        world = await observe(parsed, status)
        decision = decide(parsed, status, world, job_settings(ctx.settings), ctx.now)
        if decision.job is not None:
            created = await create_job(kind, parsed.metadata["namespace"], decision.job)
    except kube.KubeError as exc:
        return kube_trouble(obj, ctx, exc)
    return Outcome(status=decision.status, events=decision.events, acted=created,
                   retry_after=ctx.backoff() if decision.retry else None)


def next_pass_in(interval: float, requeue_after: float | None) -> float:
    """Seconds until the next level-triggered pass: the timer's interval, or sooner when the last decision
    named a moment at which it will decide differently (a step ending, an analysis run due, a router pod
    expected Ready); never sooner than one second."""
    if requeue_after is None:
        return interval
    return max(1.0, min(interval, requeue_after))


def due(memo: Any, now: float) -> bool:
    """Whether a gated timer's tick should run the passes (``run_passes`` records when the next one is due)."""
    return now >= memo.get("mlops_next_pass", 0.0)


def _lock(memo: Any) -> asyncio.Lock:
    """One pass at a time per object (timer and change handlers may fire together)."""
    lock = memo.get("mlops_lock")
    if lock is None:
        lock = memo["mlops_lock"] = asyncio.Lock()
    return lock


def post_events(obj: Mapping[str, Any], events: list[Event]) -> None:
    for ev in events:
        kopf.event(dict(obj), type=ev.type, reason=ev.reason, message=ev.message[:1024])


async def run_passes(kind: str, plural: str, body: Mapping[str, Any], memo: Any,
                     logger: logging.Logger | logging.LoggerAdapter, step: Step,
                     indices: Mapping[str, Any] | None = None) -> tuple[float, str] | None:
    """Run ``step`` until it changes nothing (or ``max_passes``); ``(back-off, why)`` if it asked for one."""
    settings = operator_settings()
    obj: dict[str, Any] | None = plain(body)
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    async with _lock(memo):
        for _ in range(settings.max_passes):
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            started = time.monotonic()
            ctx = Context(kind=kind, plural=plural, settings=settings, now=datetime.now(timezone.utc),
                          logger=logger, failures=memo.get("mlops_failures", 0), indices=indices or {})
            outcome = await step(obj, ctx)
            outcome.status = with_kstatus(kind, outcome.status or {}, obj["metadata"].get("generation"), ctx.now)
            delta = status_delta(obj.get("status") or {}, outcome.status)
            if delta:
                try:
                    obj = await kube.patch_status(plural, namespace, name, delta,
                                                  resource_version=obj["metadata"].get("resourceVersion"))
                except kube.Conflict:
                    instruments.RECONCILES.labels(kind, "conflict").inc()
                    obj = await kube.get_custom(plural, namespace, name)
                    continue
                except kube.KubeError as exc:
                    if exc.status == 404:  # deleted while we decided: nothing left to reconcile
                        return None
                    raise
            post_events(obj, outcome.events)
            changed = bool(delta) or outcome.acted
            result = "retrying" if outcome.retry_after else ("changed" if changed else "unchanged")
            instruments.RECONCILES.labels(kind, result).inc()
            instruments.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
            if outcome.retry_after:
                memo["mlops_failures"] = memo.get("mlops_failures", 0) + 1
                why = get_condition((outcome.status or {}).get("conditions"), RETRYING) or {}
                return outcome.retry_after, f"{why.get('reason', 'Retrying')}: {why.get('message', '')}"
            memo["mlops_failures"] = 0
            if not changed:
                memo["mlops_next_pass"] = time.monotonic() + next_pass_in(settings.reconcile_interval,
                                                                         outcome.requeue_after)
                return None
    memo["mlops_next_pass"] = 0.0  # max_passes reached while every step changed something: continue next tick
    return None


async def reconcile_tick(kind: str, plural: str, body: Mapping[str, Any], memo: Any,
                         logger: logging.Logger | logging.LoggerAdapter, step: Step, *, gated: bool = False,
                         indices: Mapping[str, Any] | None = None) -> None:
    """Timer entry point: transient trouble becomes ``TemporaryError`` so Kopf waits the back-off.

    ``gated``: the timer ticks faster than ``reconcile_interval`` and a tick runs the passes only once the
    next pass is due (``next_pass_in``), which is how a step's ``requeue_after`` is honoured.
    """
    if gated and not due(memo, time.monotonic()):
        return
    try:
        retry = await run_passes(kind, plural, body, memo, logger, step, indices)
    except kube.KubeError as exc:  # status write or re-read failed: the apiserver is the problem
        instruments.RECONCILES.labels(kind, "failed").inc()
        failures = memo.get("mlops_failures", 0)
        memo["mlops_failures"] = failures + 1
        s = operator_settings()
        delay = backoff_delay(failures, s.retry_base_delay, s.retry_max_delay)
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}", delay=delay) from exc
    if retry:
        delay, why = retry
        raise kopf.TemporaryError(f"{why} (retrying in {delay:.0f}s)", delay=delay)


def register(kind: str, plural: str, step: Step, *, on_change: tuple[str | list[str], ...] = ("spec",),
             tick: float | None = None, indices: tuple[str, ...] = ()) -> None:
    """Register the timer that drives ``kind``'s pass loop, plus the fast path on a change of ``on_change``.

    The timer is the level-triggered engine (and retries transient trouble with back-off); a spec edit or a
    request annotation runs the same passes at once instead of waiting for the next tick. ``tick``: the
    timer ticks this often and runs passes only when due, so a step's ``requeue_after`` is honoured.
    ``indices``: ids of Kopf indices (``@kopf.index``) the step reads; Kopf hands them to every handler as
    keyword arguments, and the passes find them in ``Context.indices``.
    """
    interval = operator_settings().reconcile_interval
    gated = tick is not None and tick < interval

    @kopf.timer(GROUP, VERSION, plural, id="reconcile", interval=tick if gated else interval)
    async def timer(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
        await reconcile_tick(kind, plural, body, memo, logger, step, gated=gated,
                             indices={i: kwargs[i] for i in indices})

    async def changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
        try:
            await run_passes(kind, plural, body, memo, logger, step, {i: kwargs[i] for i in indices})
        except kube.KubeError as exc:
            logger.warning("reconcile after a change failed (%s); the timer retries", exc)

    for watched in on_change:
        kopf.on.update(GROUP, VERSION, plural, id="changed" if watched == "spec" else "requested", field=watched)(changed)
