"""Manual actions: ``mlops.dev/promote``, ``mlops.dev/abort`` and ``mlops.dev/retry`` annotations. Pure.

The annotation's value is a nonce (a timestamp, a counter: anything new). A request is acted on when its
value differs from the one recorded in ``status.handledRequests``, and the value is recorded in the same
status write as the action, so each request is acted on exactly once: after a crash before the write,
the action is decided again from the same state; after the write, it is never repeated. A request that
finds nothing to act on (promote with no rollout in progress) is recorded too, so it can never fire
later on a candidate the user did not mean.

Abort is handled before promote: if both arrive together, the safe one wins.

In a post-promotion window there is no candidate, but the promoted version is still on probation:
abort moves all traffic back to the previous version at once (and blocks the promoted one from
``track``), promote accepts it now (the window ends, the previous version goes). Retry clears
``abortedVersion`` and every blocked version, so ``track`` follows the newest Ready version again.
"""

from __future__ import annotations

from mlops_operator.logic.rollout import common
from mlops_operator.logic.rollout.common import Pass, Strategy

ANNOTATION_PREFIX = "mlops.dev/"


def pending(p: Pass, kind: str) -> str | None:
    """The new value of the ``kind`` annotation, or None when absent or already handled."""
    value = p.obs.annotations.get(ANNOTATION_PREFIX + kind)
    if not value or p.st.handled.get(kind) == value:
        return None
    return value


def handle(p: Pass, strategy: Strategy | None) -> None:
    """Act on every new request, in the order abort, retry, promote."""
    for kind, act in (("abort", _abort), ("retry", _retry), ("promote", _promote)):
        value = pending(p, kind)
        if value is not None:
            p.st.handled[kind] = value
            act(p, strategy, value)


def _abort(p: Pass, _: Strategy | None, value: str) -> None:
    if p.watching:
        common.rollback_promotion(p, f"aborted by user ({ANNOTATION_PREFIX}abort={value})", event="aborted")
        return
    if p.st.candidate is None:
        p.event("Normal", "AbortIgnored", f"abort request {value!r}: no rollout in progress")
        return
    common.rollback(p, f"aborted by user ({ANNOTATION_PREFIX}abort={value})", event="aborted")


def _retry(p: Pass, _: Strategy | None, value: str) -> None:
    if p.st.aborted is None and not p.st.blocked:
        p.event("Normal", "RetryIgnored", f"retry request {value!r}: nothing was aborted or rolled back")
        return
    names = ", ".join(dict.fromkeys([v for v in (p.st.aborted,) if v] + p.st.blocked))
    p.event("Normal", "Retry", f"{names} may be rolled out again ({ANNOTATION_PREFIX}retry={value})")
    p.st.aborted, p.st.blocked = None, []
    if not p.watching:  # a window's own failures are not the retried version's
        p.st.failed_checks = 0


def _promote(p: Pass, strategy: Strategy | None, value: str) -> None:
    if p.watching:
        common.end_window(p, f"accepted by user ({ANNOTATION_PREFIX}promote={value})")
        return
    if p.st.candidate is None or strategy is None:
        p.event("Normal", "PromoteIgnored", f"promote request {value!r}: no rollout in progress")
        return
    if not p.candidate_workload_ready(strategy.candidate_replicas_needed(p)):
        p.event("Warning", "PromoteRefused",
                f"promote request {value!r}: {p.st.candidate} is not Ready; traffic was not moved")
        return
    strategy.manual_promote(p)
