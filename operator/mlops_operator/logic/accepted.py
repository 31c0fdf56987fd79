"""Status of a kind whose controller only validates for now (pure).

Until a kind's reconciliation lands, the operator still owes the user a truthful status: the spec was
read and is valid (``Accepted=True``), every reference resolves (``InvalidSpec=False``), and nothing is
acted on yet (phase stays at the kind's waiting phase, with a message saying so). A dangling reference
sets ``Accepted=False`` with the same reason as ``InvalidSpec``, and clears when the object appears.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import set_condition
from mlops_operator.logic.references import Problem, apply_invalid_spec
from mlops_operator.logic.status import Event

ACCEPTED = "Accepted"


def decide_accepted(status: Mapping[str, Any], problems: list[Problem], *, generation: int | None,
                    waiting_phase: str, message: str, now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """The new status and events of a validate-only object."""
    new = copy.deepcopy(dict(status))
    new["observedGeneration"] = generation
    new.setdefault("phase", waiting_phase)
    conditions, events = apply_invalid_spec(new.get("conditions"), problems, generation=generation, now=now)
    if problems:
        accepted = ("False", problems[0].reason, "; ".join(p.message for p in problems))
    else:
        accepted = ("True", "Accepted", message)
    new["conditions"] = set_condition(conditions, type=ACCEPTED, status=accepted[0], reason=accepted[1],
                                      message=accepted[2], observed_generation=generation, now=now)
    return new, events
