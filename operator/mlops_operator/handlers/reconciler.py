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

Every kind's step is the same pass (``Reconciler.step``, after Argo Rollouts' context snapshot): parse the
body into the kind's model, ``observe`` what the decision needs, ``decide`` (pure, in ``logic``), ``act`` on
the world; the result is one ``logic.status.Outcome``, whose status is written only when it changed
(CloudNativePG's write-on-change). A kind differs only in its three functions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Generic, Mapping, TypeVar

import kopf
from pydantic import ValidationError

from mlops_operator import instruments
from mlops_operator.api.v1alpha1.common import GROUP, VERSION, get_condition, plain
from mlops_operator.handlers.observe import create_job, job_settings
from mlops_operator.logic.jobs import JobSettings
from mlops_operator.logic.status import (
    RETRYING,
    Event,
    JobOutcome,
    Outcome,
    backoff_delay,
    mark_condition,
    mark_retrying,
    status_delta,
    with_kstatus,
)
from mlops_operator.operator_settings import OperatorSettings, operator_settings
from mlops_operator.providers import kube


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
    return Outcome(status=status, events=events, retry=True)


def unparseable(obj: Mapping[str, Any], ctx: Context, exc: ValidationError) -> Outcome:
    """The object does not match the operator's models (a CRD older/newer than the operator)."""
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    status = mark_condition(obj.get("status") or {}, "InvalidSpec", "True", "SchemaMismatch",
                            f"the operator cannot read this object: {details}",
                            generation=obj["metadata"].get("generation"), now=ctx.now)
    return Outcome(status=status)


M = TypeVar("M")  # the kind's parsed model
W = TypeVar("W")  # what its observe step gathered


@dataclass(frozen=True)
class Snapshot(Generic[M]):
    """What one pass reads, taken once at its start: the body, its parsed model and status, the context."""

    body: dict[str, Any]
    model: M
    status: dict[str, Any]
    ctx: Context

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]


@dataclass(frozen=True)
class Reconciler(Generic[M, W]):
    """One kind's pass: its model and its observe / decide / act functions; ``step`` runs them in order.

    ``observe`` reads what the decision needs (I/O, through providers); ``decide`` is pure and returns the
    kind's ``Outcome``; ``act`` applies it to the world (AlreadyExists is success) and returns the outcome
    with ``acted`` set, or another one when acting failed in a way the status must show. An API failure
    in observe or act becomes ``Retrying`` with a back-off; a body the model cannot read, ``InvalidSpec``.
    """

    kind: str
    plural: str
    parse: Callable[[dict[str, Any]], M]
    observe: Callable[[Snapshot[M]], Awaitable[W]]
    decide: Callable[[Snapshot[M], W], Outcome]
    act: Callable[[Snapshot[M], W, Outcome], Awaitable[Outcome]]
    indices: tuple[str, ...] = ()  # ids of the Kopf indices observe reads (``Context.indices``)

    async def step(self, obj: dict[str, Any], ctx: Context) -> Outcome:
        """One pass over one object (the ``Step`` ``run_passes`` drives)."""
        try:
            snap = Snapshot(obj, self.parse(obj), obj.get("status") or {}, ctx)
        except ValidationError as exc:
            return unparseable(obj, ctx, exc)
        try:
            world = await self.observe(snap)
            outcome = await self.act(snap, world, self.decide(snap, world))
        except kube.KubeError as exc:
            return kube_trouble(obj, ctx, exc)
        return outcome


def job_reconciler(kind: str, plural: str, parse: Callable[[dict[str, Any]], M],
                   observe: Callable[[Snapshot[M]], Awaitable[W]],
                   decide: Callable[[M, Mapping[str, Any], W, JobSettings, datetime], JobOutcome]) -> Reconciler[M, W]:
    """A kind driven by runtime Jobs (ModelVersion, FeatureSet, BatchPrediction): its decision gets the Job
    settings, and acting is creating the Job the outcome names (AlreadyExists is success)."""
    def decide_pass(snap: Snapshot[M], world: W) -> JobOutcome:
        return decide(snap.model, snap.status, world, job_settings(snap.ctx.settings), snap.ctx.now)

    async def act(snap: Snapshot[M], world: W, outcome: JobOutcome) -> Outcome:
        if outcome.job is not None:
            outcome.acted = await create_job(kind, snap.namespace, outcome.job)
        return outcome

    return Reconciler(kind, plural, parse, observe, decide_pass, act)


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
                     indices: Mapping[str, Any] | None = None, *, now: datetime | None = None,
                     max_passes: int | None = None) -> tuple[float, str] | None:
    """Run ``step`` until it changes nothing (or ``max_passes``); ``(back-off, why)`` if it asked for one.

    ``now`` fixes the clock the passes decide on (default: the wall clock at each pass's start)."""
    settings = operator_settings()
    obj: dict[str, Any] | None = plain(body)
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    async with _lock(memo):
        for _ in range(max_passes or settings.max_passes):
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            started = time.monotonic()
            ctx = Context(kind=kind, plural=plural, settings=settings, now=now or datetime.now(timezone.utc),
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
            result = "retrying" if outcome.retry else ("changed" if changed else "unchanged")
            instruments.RECONCILES.labels(kind, result).inc()
            instruments.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
            if outcome.retry:
                memo["mlops_failures"] = memo.get("mlops_failures", 0) + 1
                why = get_condition((outcome.status or {}).get("conditions"), RETRYING) or {}
                return ctx.backoff(), f"{why.get('reason', 'Retrying')}: {why.get('message', '')}"
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


def register(reconciler: Reconciler[Any, Any], *, on_change: tuple[str | list[str], ...] = ("spec",),
             tick: float | None = None) -> None:
    """Register the timer that drives a kind's pass loop, plus the fast path on a change of ``on_change``.

    The timer is the level-triggered engine (and retries transient trouble with back-off); a spec edit or a
    request annotation runs the same passes at once instead of waiting for the next tick. ``tick``: the
    timer ticks this often and runs passes only when due, so a step's ``requeue_after`` is honoured.
    ``reconciler.indices``: ids of Kopf indices (``@kopf.index``) the step reads; Kopf hands them to every
    handler as keyword arguments, and the passes find them in ``Context.indices``.
    """
    kind, plural, step, indices = reconciler.kind, reconciler.plural, reconciler.step, reconciler.indices
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
