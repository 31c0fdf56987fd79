"""The gates a trained version must pass to become Ready (pure).

Fail safe: a metric the gate names but the version did not report, or a value that is not a finite
number, fails the gate — a version is never promoted on data it does not have. The one exception is
``mustBeatStable`` when there is nothing to beat (the deployment has no stable version yet, or the
stable version never reported the metric): the first version of a model must be able to become Ready.
Direction comes from the metric (``LOWER_IS_BETTER``); ``margin`` is how much better the new version
must be, so with ``margin: 0`` a tie passes ("not worse than stable").

``mustBeatStable`` compares on the same rows when it can: the training Job scored the stable version on
the challenger's own test split and recorded it in ``metrics.json`` as ``baseline`` (comparison
``sameRows``). A stable version the Job could not load or score fails the gate with the Job's reason
(fail closed: no promotion on a comparison that was not made). A report without a same-rows score of the
CURRENT stable version (trained before this existed, registered via ``spec.artifact``, or the stable
version changed while training) falls back to the stable version's own recorded metric (comparison
``recorded``), and the gate result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.training import LOWER_IS_BETTER, Gates, MustBeatStable

_EPS = 1e-12  # float noise must not turn a tie into a rejection
SAME_ROWS = "sameRows"   # the stable version scored on this version's test rows by the training Job
RECORDED = "recorded"    # the stable version's own metric, recorded at its training (other rows)


@dataclass(frozen=True)
class Baseline:
    """The stable version a ``mustBeatStable`` gate compares with (``version`` None = no stable yet)."""

    deployment: str
    version: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)  # recorded at its own training
    uri: str | None = None      # its verified artifact prefix (status.artifact.uri)
    sha256: str | None = None   # sha256 of its model.joblib (status.artifact.sha256)


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    results: list[dict[str, Any]]   # status.gateResults entries
    failures: list[str]             # one readable line per failed gate
    notes: list[str]                # how a passed gate compared (or why it had nothing to compare with)


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


def evaluate_gates(gates: Gates | None, metrics: Mapping[str, Any], baseline: Baseline | None,
                   scored: Any = None) -> GateVerdict:
    """Judge ``metrics`` against ``gates``; ``baseline`` is required when ``mustBeatStable`` is set.

    ``scored`` is the training report's ``baseline`` record (``{version, metrics, rows}`` or
    ``{version, rows, reason}``), None when the report has none."""
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
        result, failure, note = _must_beat_stable(mbs, _number(metrics.get(str(mbs.metric))), baseline, scored)
        results.append(result)
        failures.extend([failure] if failure else [])
        notes.extend([note] if note else [])
    return GateVerdict(not failures, results, failures, notes)


@dataclass(frozen=True)
class _Bar:
    """What the challenger is compared with: the stable score, how it was obtained, on how many rows."""

    comparison: str
    stable: float | None
    rows: int | None = None
    why: str = ""       # sameRows: why the stable version has no score; recorded: why not on the same rows


def _same_rows(scored: Any, version: str) -> Mapping[str, Any] | None:
    """The report's baseline record when it scored ``version`` (the current stable version), else None."""
    if isinstance(scored, Mapping) and scored.get("version") == version:
        return scored
    return None


def _bar(metric: str, baseline: Baseline, scored: Any) -> _Bar:
    assert baseline.version
    record = _same_rows(scored, baseline.version)
    if record is None:
        other = scored.get("version") if isinstance(scored, Mapping) else None
        why = (f"the training Job scored {other}, but the stable version of {baseline.deployment} is now "
               f"{baseline.version}" if other else "the training report has no same-rows score of the stable version")
        return _Bar(RECORDED, _number(baseline.metrics.get(metric)), why=why)
    rows = record.get("rows")
    rows = rows if isinstance(rows, int) and not isinstance(rows, bool) else None
    reason = record.get("reason")
    if reason:
        return _Bar(SAME_ROWS, None, rows, str(reason)[:512])
    stable = _number((record.get("metrics") or {}).get(metric)) if isinstance(record.get("metrics"), Mapping) else None
    return _Bar(SAME_ROWS, stable, rows, "" if stable is not None else f"its {metric} is undefined on these rows")


def _must_beat_stable(mbs: MustBeatStable, value: float | None, baseline: Baseline,
                      scored: Any) -> tuple[dict[str, Any], str | None, str | None]:
    """(gate result, failure line or None, note or None)."""
    metric, lower, margin = str(mbs.metric), mbs.metric in LOWER_IS_BETTER, mbs.margin
    if value is None:
        return (_result("mustBeatStable", metric, None, None, False) | {"margin": margin},
                f"mustBeatStable: {metric} was not reported (or is not a finite number)", None)
    if not baseline.version:
        return (_result("mustBeatStable", metric, value, None, True) | {"margin": margin}, None,
                f"mustBeatStable: nothing to beat (ModelDeployment {baseline.deployment} has no stable version yet)")
    bar = _bar(metric, baseline, scored)
    out = _result("mustBeatStable", metric, value, None, False) | {
        "margin": margin, "baselineVersion": baseline.version, "comparison": bar.comparison}
    if bar.rows is not None:
        out["rows"] = bar.rows
    if bar.why:
        out["message"] = bar.why
    stable = bar.stable
    if stable is None and bar.comparison == SAME_ROWS:  # asked for and not obtained: never a silent pass
        return out, (f"mustBeatStable: stable version {baseline.version} could not be scored on this version's "
                     f"test rows ({bar.why}); nothing is promoted on a comparison that was not made"), None
    if stable is None:
        return out | {"passed": True}, None, (f"mustBeatStable: nothing to beat (stable version {baseline.version} "
                                              f"of {baseline.deployment} has no {metric})")
    threshold = stable - margin if lower else stable + margin
    passed = value <= threshold + _EPS if lower else value >= threshold - _EPS
    out.update(baseline=stable, threshold=threshold, passed=passed)
    where = (f"on the same {bar.rows if bar.rows is not None else '?'} test rows" if bar.comparison == SAME_ROWS
             else f"recorded at its own training, on other rows: {bar.why}")
    if not passed:
        return out, (f"mustBeatStable: {metric} {value:.6g} does not beat stable {baseline.version} "
                     f"({stable:.6g}, {where}) by margin {margin:g}"), None
    return out, None, (f"mustBeatStable: {metric} {value:.6g} beats stable {baseline.version} ({stable:.6g}, "
                       f"{where}) by margin {margin:g}")
