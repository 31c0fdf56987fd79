"""Label feedback through the router: which variant(s) get it, and which answer goes back. Pure, no I/O.

Feedback must reach the version that made the prediction, but the router does not know which one did:
the weighted split picked it, and another router replica may have answered it. Two designs were weighed:

- **keep an id -> variant map** in the router: it would have to read the id out of every prediction
  answer (a JSON parse on the hot path of every request), it is lost on a router restart, and with two
  router replicas behind the Service the feedback often arrives at the replica that never saw the
  prediction;
- **fan the feedback out** (chosen): feedback by `id` is sent to every primary variant (stable and, during
  a canary or blue/green, the candidate) at once. Only the server that made the prediction remembers the
  id; the others answer 404, which costs one small extra request per feedback and no state at all, so it
  works across restarts and replicas. The shadow is not asked: clients never see its answers, so no id
  a client holds is the shadow's.

Feedback with explicit `predictions` (no id) names no prediction, and fanning it out would score the same
rows twice. It goes to the variant serving the document's `version` field when given (404 if no variant
serves that version, listing those that do), else to the stable variant.

Which answer the client gets (`pick`): the first 2xx; else a refusal from a variant that knew the id (any
4xx but 404: wrong length, non-numeric labels, already labelled); else a failure that may be the
predicting variant's (5xx, unreachable: worth retrying); else 404 (no live variant knows the id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlops_operator.runtime.route_config import RouterConfig
from mlops_operator.runtime.serve_json import loads

PRIMARIES = ("stable", "candidate")


def is_feedback(method: str, path: str) -> bool:
    """`POST /v1/models/<m>:feedback` or `POST /v2/models/<m>[/versions/<v>]/feedback`."""
    if method != "POST":
        return False
    return (path.startswith("/v1/models/") and path.endswith(":feedback")) or (
        path.startswith("/v2/models/") and path.endswith("/feedback"))


@dataclass(frozen=True)
class Targets:
    """The variants to send one feedback to, or (none and) the error to answer with."""

    variants: tuple[str, ...]
    error: str | None = None


def targets(body: bytes, config: RouterConfig) -> Targets:
    """Where one feedback body goes (module docstring). A body that is not a JSON object goes to stable,
    whose server answers it with the exact problem."""
    try:
        doc: Any = loads(body)
    except Exception:
        doc = None
    if not isinstance(doc, dict):
        return Targets(("stable",))
    if doc.get("id") is not None:
        return Targets(tuple(v for v in PRIMARIES if v in config.weights))
    version = doc.get("version")
    if isinstance(version, str):
        live = {u.version: u.name for u in (config.stable, config.candidate, config.shadow) if u is not None}
        if version not in live:
            served = ", ".join(f"{name}: {v}" for v, name in live.items())
            return Targets((), f"version {version!r} is not served by this model deployment ({served})")
        return Targets((live[version],))
    return Targets(("stable",))


@dataclass(frozen=True)
class Answer:
    variant: str
    status: int  # 502 when the variant could not be reached
    body: bytes


def _rank(status: int) -> int:
    if 200 <= status < 300:
        return 0
    if 400 <= status < 500 and status != 404:
        return 1
    if status != 404:
        return 2
    return 3


def pick(answers: list[Answer]) -> Answer:
    """The answer the client gets (module docstring); ties go to the earlier variant (stable first)."""
    return min(answers, key=lambda a: _rank(a.status))


def scored_rows(body: bytes) -> tuple[int, int | None, float | None]:
    """(rows, correct, absolute_error) from a server's 200 feedback answer: a classifier's answer has no
    absolute error, a regression model's no correct rows (None)."""
    try:
        doc = loads(body)
    except Exception:
        return 0, None, None
    if not isinstance(doc, dict):
        return 0, None, None
    rows, correct, error = doc.get("rows"), doc.get("correct"), doc.get("absolute_error")
    rows = rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else 0
    correct = correct if isinstance(correct, int) and not isinstance(correct, bool) and 0 <= correct <= rows else None
    numeric = isinstance(error, (int, float)) and not isinstance(error, bool)
    error = float(error) if numeric and math.isfinite(error) and error >= 0 else None
    return rows, correct, error
