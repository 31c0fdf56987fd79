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

Versions that just left the router (a promotion replaced the stable, a rollback removed the candidate)
still hold ids their clients will label: the previous stable stays warm through a post-promotion window,
and labels often arrive minutes after the prediction. The router remembers the versions it stopped
routing to (`RetiredVersions`: at most a few, each for a bounded time, the servers' own memory of
predictions by default) and asks them too. Their answers never hide the live versions': a retired
version that is gone or failing ranks like a 404, and when no one knew the id but a retired version could
not be asked, the answer is 410 Gone naming it (the prediction may have been its; it can no longer be
labelled by id).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops_operator.runtime.route_config import RouterConfig, Upstream
from mlops_operator.runtime.serve_json import dumps, loads

PRIMARIES = ("stable", "candidate")
RETIRED = "retired"  # the variant (metrics label, x-mlops-variant) of a version that left the router


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
    by_id: bool = False  # feedback by prediction id: retired versions are asked too


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
        return Targets(tuple(v for v in PRIMARIES if v in config.weights), by_id=True)
    version = doc.get("version")
    if isinstance(version, str):
        live = {u.version: u.name for u in config.upstreams}
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
    version: str | None = None  # set for a retired version (a live variant's version is in the config)


def _rank(answer: Answer) -> int:
    status = answer.status
    if 200 <= status < 300:
        return 0
    if 400 <= status < 500 and status != 404:
        return 1
    if status != 404 and answer.variant != RETIRED:
        return 2
    return 3


def pick(answers: list[Answer]) -> Answer:
    """The answer the client gets (module docstring); ties go to the earlier variant (stable first, retired
    versions last). A 404 while a retired version could not be asked becomes 410 Gone naming it."""
    chosen = min(answers, key=_rank)
    unreachable = sorted({a.version or "?" for a in answers if a.variant == RETIRED and a.status >= 500})
    if chosen.status != 404 or not unreachable:
        return chosen
    message = (f"no version serving now knows this prediction id, and {', '.join(unreachable)}, which left this "
               "model deployment recently, can no longer be reached: if the prediction was its, it can no longer "
               "be labelled by id")
    return Answer(RETIRED, 410, dumps({"error": message}), unreachable[0])


class RetiredVersions:
    """The versions this router stopped routing to, asked for feedback by id for ``ttl`` seconds (at most
    ``limit`` of them, the most recently retired kept). Per router replica and in memory: a restarted router
    starts without them."""

    def __init__(self, ttl: float = 3600.0, limit: int = 4, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.limit, self._clock = ttl, limit, clock
        self._retired: dict[str, tuple[Upstream, float]] = {}  # version -> (its upstream, retired until)

    def note(self, before: RouterConfig | None, after: RouterConfig) -> None:
        """A new configuration is in effect: primaries of ``before`` that ``after`` does not serve retire;
        a version served again is no longer retired."""
        served = {u.version for u in after.upstreams}
        for version in served:
            self._retired.pop(version, None)
        if before is not None and self.ttl > 0 and self.limit > 0:
            for upstream in (before.stable, before.candidate):
                if upstream is not None and upstream.version not in served:
                    self._retired.pop(upstream.version, None)
                    self._retired[upstream.version] = (upstream, self._clock() + self.ttl)
        while len(self._retired) > self.limit:
            self._retired.pop(next(iter(self._retired)))

    def upstreams(self) -> list[Upstream]:
        """The retired versions still to be asked, most recently retired first."""
        now = self._clock()
        for version in [v for v, (_, until) in self._retired.items() if until <= now]:
            del self._retired[version]
        return [upstream for upstream, _ in reversed(self._retired.values())]


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
