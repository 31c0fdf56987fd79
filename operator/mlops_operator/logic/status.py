"""Status bookkeeping shared by every kind: what changed, and how long to back off.

Pure helpers so "write status only when it changed" and "never a hot loop" are each decided in one
place and tested with plain dicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import get_condition, set_condition


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a step asks for; posted only after the step's status was written."""

    type: str  # Normal | Warning
    reason: str
    message: str


def status_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch turning ``old`` into ``new`` at the top level; ``{}`` when nothing changed.

    Only top-level fields that differ are sent, so fields another writer owns (e.g. ``stage`` of a
    ModelVersion, kept by ModelDeployments) are never rewritten from a stale copy. A field present in
    ``old`` but dropped from ``new`` is removed (``None`` in a merge patch).

    >>> status_delta({"phase": "Pending", "stage": "None"}, {"phase": "Training", "stage": "None"})
    {'phase': 'Training'}
    """
    delta: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    delta.update({key: None for key in old if key not in new})
    return delta


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential back-off after ``failures`` consecutive transient failures (0 = the first one).

    >>> [backoff_delay(n, 5, 60) for n in range(6)]
    [5, 10, 20, 40, 60, 60]
    """
    return min(cap, base * (2 ** min(max(failures, 0), 16)))


RETRYING = "Retrying"


def mark_retrying(status: Mapping[str, Any], reason: str, message: str, *, generation: int | None,
                  now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """``status`` with ``Retrying=True`` (reason names the trouble); a Warning event when it is news."""
    new = copy.deepcopy(dict(status))
    before = get_condition(new.get("conditions"), RETRYING) or {}
    new["conditions"] = set_condition(new.get("conditions"), type=RETRYING, status="True", reason=reason,
                                      message=message, observed_generation=generation, now=now)
    news = before.get("status") != "True" or before.get("reason") != reason
    return new, [Event("Warning", reason, message)] if news else []


def mark_condition(status: Mapping[str, Any], type_: str, value: str, reason: str, message: str, *,
                   generation: int | None, now: datetime) -> dict[str, Any]:
    """``status`` with one condition set (the others untouched)."""
    new = copy.deepcopy(dict(status))
    new["conditions"] = set_condition(new.get("conditions"), type=type_, status=value, reason=reason,
                                      message=message, observed_generation=generation, now=now)
    return new
