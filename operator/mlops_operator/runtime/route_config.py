"""The router's configuration: parsing, validation and the generation rule. Pure, no I/O.

Document (the ConfigMap's JSON, and the body of `PUT /-/config`)::

    {"generation": 7, "model": "breast-cancer",
     "stable":    {"url": "http://bc-stable:8080",    "version": "bc-v6"},
     "candidate": {"url": "http://bc-candidate:8080", "version": "bc-v7", "weight": 10},
     "shadow":    {"url": "http://bc-shadow:8080",    "version": "bc-v8", "percent": 100, "tolerance": 0.01}}

`candidate` and `shadow` are optional; `weight` is the candidate's share of primary traffic in percent
(stable gets the rest) and `percent` the share of primary requests mirrored to the shadow; the optional
`tolerance` (a number >= 0, from `spec.strategy.shadow.agreementTolerance`) is how far numeric shadow
predictions may differ from the primary's and still agree (absent: `MLOPS_SHADOW_TOLERANCE`). Weights are
kept in basis points (1/100 of a percent) so the split is exact integer arithmetic.

Generation rule: the operator bumps `generation` on every change. A config with a lower generation than
the current one is stale (e.g. the slow ConfigMap volume catching up after a faster `PUT`) and ignored;
the same generation with the same content is a no-op; the same generation with different content is
refused, since two writers disagree and the later one must bump the generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

FULL = 10_000  # 100 % in basis points


class ConfigError(ValueError):
    """The document is not a valid router configuration; the message names the field."""


@dataclass(frozen=True)
class Upstream:
    name: str  # stable | candidate | shadow
    url: str
    version: str
    host: str
    port: int
    base_path: str  # prefix prepended to every forwarded path ("" for none)


@dataclass(frozen=True)
class RouterConfig:
    generation: int
    stable: Upstream
    candidate: Upstream | None
    candidate_weight: int  # basis points
    shadow: Upstream | None
    shadow_percent: int  # basis points
    model: str
    document: dict  # as received, echoed by GET /-/config
    shadow_tolerance: float | None = None  # None: the router's default (MLOPS_SHADOW_TOLERANCE)

    @property
    def weights(self) -> dict[str, int]:
        if self.candidate is None:
            return {"stable": FULL}
        return {"stable": FULL - self.candidate_weight, "candidate": self.candidate_weight}

    @property
    def upstreams(self) -> list[Upstream]:
        """Every upstream this configuration sends to: stable, then candidate and shadow when present."""
        return [u for u in (self.stable, self.candidate, self.shadow) if u is not None]

    def upstream(self, variant: str) -> Upstream:
        found = {"stable": self.stable, "candidate": self.candidate, "shadow": self.shadow}.get(variant)
        if found is None:
            raise KeyError(variant)
        return found


def _percent(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
        raise ConfigError(f"{field} must be a number from 0 to 100, got {value!r}")
    return round(value * 100)


def _tolerance(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{field} must be a finite number >= 0, got {value!r}")
    return float(value)


def _upstream(doc: Any, name: str) -> Upstream:
    if not isinstance(doc, dict):
        raise ConfigError(f"{name} must be an object with url and version")
    url = doc.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{name}.url is required")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ConfigError(f"{name}.url must be an http:// URL (in-cluster Service), got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(f"{name}.url has an invalid port: {url!r}") from None
    if not parts.hostname:
        raise ConfigError(f"{name}.url has no host: {url!r}")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{name}.url must be scheme://host[:port][/path] only, got {url!r}")
    version = doc.get("version", "")
    if not isinstance(version, str):
        raise ConfigError(f"{name}.version must be a string")
    return Upstream(name, url, version, parts.hostname, port, parts.path.rstrip("/"))


def parse_config(doc: Any) -> RouterConfig:
    """Validate a configuration document; raises ConfigError naming the offending field."""
    if not isinstance(doc, dict):
        raise ConfigError("the router configuration must be a JSON object")
    generation = doc.get("generation")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ConfigError(f"generation must be a non-negative integer, got {generation!r}")
    model = doc.get("model", "")
    if not isinstance(model, str):
        raise ConfigError("model must be a string")
    if "stable" not in doc:
        raise ConfigError("stable is required")
    stable = _upstream(doc["stable"], "stable")
    candidate = shadow = tolerance = None
    weight = percent = 0
    if doc.get("candidate") is not None:
        candidate = _upstream(doc["candidate"], "candidate")
        weight = _percent(doc["candidate"].get("weight", 0), "candidate.weight")
    if doc.get("shadow") is not None:
        shadow = _upstream(doc["shadow"], "shadow")
        percent = _percent(doc["shadow"].get("percent", 100), "shadow.percent")
        tolerance = _tolerance(doc["shadow"].get("tolerance"), "shadow.tolerance")
    return RouterConfig(generation, stable, candidate, weight, shadow, percent, model, doc, tolerance)


class Verdict(str, Enum):
    APPLY = "apply"
    UNCHANGED = "unchanged"  # same generation, same content: an idempotent repeat
    STALE = "stale"  # lower generation: ignored
    CONFLICT = "conflict"  # same generation, different content: refused


def decide(current: RouterConfig | None, new: RouterConfig) -> tuple[Verdict, str]:
    """What to do with `new` under the generation rule in the module docstring, and why."""
    if current is None:
        return Verdict.APPLY, f"initial configuration, generation {new.generation}"
    if new.generation > current.generation:
        return Verdict.APPLY, f"generation {current.generation} -> {new.generation}"
    if new.generation < current.generation:
        return Verdict.STALE, f"stale generation {new.generation} < current {current.generation}: ignored"
    if new.document == current.document:
        return Verdict.UNCHANGED, f"generation {new.generation} unchanged"
    return Verdict.CONFLICT, f"generation {new.generation} already applied with different content: bump the generation"
