"""Only objects with work to do at deletion carry Kopf's finalizer: our timers are detached from it.

Kopf adds its finalizer to every object that a handler requiring one matches, and removes it on the first
event after none does (``kopf._core.reactor.processing.process_resource_causes``). ``on.delete`` handlers
require it unless ``optional``, and we give ours filters (``logic.deletion``). But ``@kopf.timer`` hard-codes
``requires_finalizer=True`` (kopf/on.py; upstream keeps it so, nolar/kopf#896), so every object of every
kind with a reconcile timer got the finalizer — and nothing could be deleted without the operator running.

``detach_timers`` re-registers our timers with ``requires_finalizer=False``. What the finalizer bought
them is the stop on deletion: an object deleted without a finalizer vanishes at once and its DELETED
event carries no ``deletionTimestamp``, so Kopf would not stop its timer (kopf#548) and a task would tick
on a stale body forever. ``mark_gone`` (an ``on.event`` handler: watching handlers never need a
finalizer) flags the object's memo on that DELETED event; the watching handlers run before the spawning
ones in the same processing cycle, and the timers' ``when`` filter then no longer matches, so Kopf stops
them as filter mismatches. Objects that do carry the finalizer are stopped by Kopf as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf
from kopf._core.intents.handlers import TimerHandler

from mlops_operator.api.v1alpha1.common import GROUP, VERSION

GONE = "mlops_gone"  # memo key: the object's DELETED event was seen
PLURALS = ("featuresets", "modelversions", "modeldeployments", "retrainpolicies", "hyperparametersearches",
           "batchpredictions")


def still_there(memo: Any = None, **_: Any) -> bool:
    """The timers' filter: False once the object's DELETED event was seen."""
    return not (memo is not None and memo.get(GONE))


def _both(first: Any, second: Any) -> Any:
    if first is None:
        return second

    def when(**kwargs: Any) -> bool:
        return bool(first(**kwargs)) and bool(second(**kwargs))
    return when


def _ours(handler: Any) -> bool:
    selector = getattr(handler, "selector", None)
    return selector is not None and getattr(selector, "group", None) == GROUP


def detach_timers(registry: kopf.OperatorRegistry | None = None) -> int:
    """Make our timers stop needing the finalizer (and stop once their object is gone); how many changed."""
    registry = registry or kopf.get_default_registry()
    spawning = registry._spawning  # noqa: SLF001  (no public API: see the module docstring)
    changed = 0
    for index, handler in enumerate(spawning._handlers):  # noqa: SLF001
        if isinstance(handler, TimerHandler) and _ours(handler) \
                and handler.requires_finalizer:
            spawning._handlers[index] = dataclasses.replace(  # noqa: SLF001
                handler, requires_finalizer=False, when=_both(handler.when, still_there))
            changed += 1
    return changed


def mark_gone(type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Flag the object as gone on its DELETED event (before Kopf matches its timers' filters)."""
    if type == "DELETED":
        memo[GONE] = True


def register_gone_markers() -> None:
    for plural in PLURALS:
        kopf.on.event(GROUP, VERSION, plural, id="gone")(mark_gone)
