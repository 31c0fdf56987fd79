"""The requests ``promote``, ``abort``, ``retry``, ``pause`` and ``resume`` send. Pure.

Exactly what the operator honours (docs/rollouts.md, logic/rollout/requests.py): a ``mlops.dev/<verb>``
annotation whose value is new (handled once, recorded in ``status.handledRequests``), and ``spec.paused``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from mlops_operator.cli.world import Obj, spec, status
from mlops_operator.logic.rollout.requests import ANNOTATION_PREFIX

REQUESTS = ("promote", "abort", "retry")


def nonce(now: datetime, previous: str | None) -> str:
    """A request value: the time to the microsecond, never equal to the value already there."""
    value = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value if value != previous else value + "-1"


def annotation(verb: str) -> str:
    return ANNOTATION_PREFIX + verb


def request_patch(mdep: Obj, verb: str, now: datetime) -> tuple[dict[str, Any], str]:
    """The merge patch of a promote / abort / retry request, and the value it sets."""
    assert verb in REQUESTS, verb
    previous = ((mdep.get("metadata") or {}).get("annotations") or {}).get(annotation(verb))
    value = nonce(now, previous)
    return {"metadata": {"annotations": {annotation(verb): value}}}, value


def pause_patch(paused: bool) -> dict[str, Any]:
    return {"spec": {"paused": paused}}


def advice(mdep: Obj, verb: str) -> str | None:
    """A warning when the operator will find nothing to do with the request (it records it all the same)."""
    st, sp = status(mdep), spec(mdep)
    in_rollout = bool(st.get("candidateVersion")) or bool(st.get("postPromotion"))
    if verb in ("promote", "abort") and not in_rollout:
        return f"no rollout in progress (phase {st.get('phase')}): the operator will record the request and ignore it"
    if verb == "retry" and not st.get("abortedVersion") and not st.get("blockedVersions"):
        return "nothing was aborted or rolled back: the operator will record the request and ignore it"
    if verb == "pause" and sp.get("paused"):
        return "already paused"
    if verb == "resume" and not sp.get("paused"):
        return "not paused (spec.paused is false)"
    return None


def handled(mdep: Obj, verb: str, value: str) -> bool:
    """Whether the operator has acted on the request with this value."""
    return (status(mdep).get("handledRequests") or {}).get(verb) == value
