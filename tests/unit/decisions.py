"""Reading a logic ``Decision`` in unit tests: one condition as (status, reason), the events as (type, reason)."""

from __future__ import annotations

from typing import Any

from mlops_operator.api.v1alpha1.common import get_condition


def cond(decision: Any, type_: str) -> tuple[str, str] | None:
    """``(status, reason)`` of the condition ``type_`` in the decision's status, or None when absent."""
    c = get_condition(decision.status.get("conditions"), type_)
    return (c["status"], c["reason"]) if c else None


def reasons(decision: Any) -> list[tuple[str, str]]:
    """``(type, reason)`` of every event the decision posts, in order."""
    return [(e.type, e.reason) for e in decision.events]


def job_env(decision: Any) -> dict[str, str | None]:
    """The plain env values of the first container of the Job the decision asks for (secret refs as None)."""
    return {e["name"]: e.get("value") for e in decision.job["spec"]["template"]["spec"]["containers"][0]["env"]}
