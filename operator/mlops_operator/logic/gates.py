"""The gates a trained version must pass to become Ready (pure).

Fail safe: a metric the gate names but the version did not report, or a value that is not a finite
number, fails the gate — a version is never promoted on data it does not have. The one exception is
``mustBeatStable`` when there is nothing to beat (the deployment has no stable version yet, or the
stable version never reported the metric): the first version of a model must be able to become Ready.
Direction comes from the metric (``LOWER_IS_BETTER``); ``margin`` is how much better the new version
must be, so with ``margin: 0`` a tie passes ("not worse than stable").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.training import LOWER_IS_BETTER, Gates

_EPS = 1e-12  # float noise must not turn a tie into a rejection


@dataclass(frozen=True)
class Baseline:
    """The stable version a ``mustBeatStable`` gate compares with (``version`` None = no stable yet)."""

    deployment: str
    version: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    results: list[dict[str, Any]]   # status.gateResults entries
    failures: list[str]             # one readable line per failed gate
    notes: list[str]                # why a gate passed without a comparison


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _result(gate: str, metric: str, value: float | None, threshold: float | None, passed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"gate": gate, "metric": metric, "passed": passed}
    if value is not None:
        out["value"] = value
    if threshold is not None:
        out["threshold"] = threshold
    return out


def evaluate_gates(gates: Gates | None, metrics: Mapping[str, Any], baseline: Baseline | None) -> GateVerdict:
    """Judge ``metrics`` against ``gates``; ``baseline`` is required when ``mustBeatStable`` is set."""
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    notes: list[str] = []
    if gates is None:
        return GateVerdict(True, results, failures, notes)

    for gate, bounds, ok, word in (("minMetrics", gates.min_metrics, lambda v, t: v >= t - _EPS, ">="),
                                   ("maxMetrics", gates.max_metrics, lambda v, t: v <= t + _EPS, "<=")):
        for metric, threshold in sorted((bounds or {}).items()):
            value = _number(metrics.get(metric))
            passed = value is not None and ok(value, threshold)
            results.append(_result(gate, metric, value, threshold, passed))
            if value is None:
                failures.append(f"{gate}: {metric} was not reported (or is not a finite number)")
            elif not passed:
                failures.append(f"{gate}: {metric} {value:.6g} is not {word} {threshold:.6g}")

    mbs = gates.must_beat_stable
    if mbs is not None:
        if baseline is None:
            raise ValueError("mustBeatStable needs a baseline")
        metric, lower = str(mbs.metric), mbs.metric in LOWER_IS_BETTER
        value = _number(metrics.get(metric))
        stable = _number(baseline.metrics.get(metric)) if baseline.version else None
        if value is None:
            results.append(_result("mustBeatStable", metric, None, None, False))
            failures.append(f"mustBeatStable: {metric} was not reported (or is not a finite number)")
        elif stable is None:
            results.append(_result("mustBeatStable", metric, value, None, True))
            notes.append(f"mustBeatStable: nothing to beat ({_nothing(baseline, metric)})")
        else:
            bar = stable - mbs.margin if lower else stable + mbs.margin
            passed = value <= bar + _EPS if lower else value >= bar - _EPS
            results.append(_result("mustBeatStable", metric, value, bar, passed))
            if not passed:
                failures.append(f"mustBeatStable: {metric} {value:.6g} does not beat stable {baseline.version} "
                                f"({stable:.6g}) by margin {mbs.margin:g}")
    return GateVerdict(not failures, results, failures, notes)


def _nothing(baseline: Baseline, metric: str) -> str:
    if not baseline.version:
        return f"ModelDeployment {baseline.deployment} has no stable version yet"
    return f"stable version {baseline.version} of {baseline.deployment} has no {metric}"
