"""Registration for kinds whose controller only validates so far (their reconciliation lands later).

Same pass loop and timer as every kind, so references are re-checked level-triggered; a spec edit is
picked up at once by an ``on.update`` handler instead of waiting for the next tick.
"""

from __future__ import annotations

from typing import Any, Callable

import kopf
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.common import GROUP, VERSION, KindInfo
from mlops_operator.handlers.reconciler import Context, Outcome, kube_trouble, reconcile_tick, run_passes, unparseable
from mlops_operator.handlers.references import resolve
from mlops_operator.logic.accepted import decide_accepted
from mlops_operator.logic.references import Reference
from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube

ReferencesOf = Callable[[Any], list[Reference]]


def make_step(info: KindInfo, references_of: ReferencesOf, waiting_phase: str, message: str):
    async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
        try:
            parsed = info.model.from_body(obj)
        except ValidationError as exc:
            return unparseable(obj, ctx, exc)
        try:
            _, problems = await resolve(references_of(parsed), obj["metadata"]["namespace"])
        except kube.KubeError as exc:
            return kube_trouble(obj, ctx, exc)
        status, events = decide_accepted(obj.get("status") or {}, problems,
                                         generation=obj["metadata"].get("generation"),
                                         waiting_phase=waiting_phase, message=message, now=ctx.now)
        return Outcome(status=status, events=events)

    return step


def register(info: KindInfo, references_of: ReferencesOf, waiting_phase: str, message: str) -> None:
    """Register the timer and spec-change handlers of one validate-only kind."""
    step = make_step(info, references_of, waiting_phase, message)
    interval = operator_settings().reconcile_interval

    @kopf.timer(GROUP, VERSION, info.plural, id="reconcile", interval=interval)
    async def tick(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        await reconcile_tick(info.kind, info.plural, body, memo, logger, step)

    @kopf.on.update(GROUP, VERSION, info.plural, id="spec-changed", field="spec")
    async def spec_changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        try:  # transient trouble is the timer's to retry with back-off; this is only the fast path
            await run_passes(info.kind, info.plural, body, memo, logger, step)
        except kube.KubeError as exc:
            logger.warning("re-validation after a spec change failed (%s); the timer retries", exc)
