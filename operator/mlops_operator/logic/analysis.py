"""Analysis verdicts: from measured values to pass / fail / no data / error. Pure.

The fail-safe rules live here, once:
- a check passes only on a finite value inside its bounds, measured on at least ``minSamples`` requests
  (for ``agreement``: compared predictions; for ``accuracy`` and ``mae``: rows labelled through feedback);
- no value, NaN (e.g. 0/0 when the candidate got no traffic) or too few samples is *no data*: it never
  passes, and counts as a failure only when ``onNoData: fail``;
- +/-Inf is a measurement out of any range (p99 beyond the largest histogram bucket): a failure;
- a query that could not run (Prometheus unreachable, a bad query) is an *error*: it never passes, and
  counts as a failure once the version carries user traffic. Before that (0 %, preview, shadow) nothing
  is at stake and the rollout simply holds, so "Prometheus down before a rollout" holds at 0 %.

A run is the set of checks measured at one instant; it is recorded in ``status.analysis`` as one entry
per check sharing the same ``at``, so "did the latest run pass, and is it newer than the step?" can be
answered from status alone after a restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Iterable, Mapping

from mlops_operator.api.v1alpha1.common import format_time

AGREEMENT = "agreement"  # builtin check added by the Shadow strategy (fraction of identical predictions)
AGREEMENT_CHECK_NAME = "shadow-agreement"
ACCURACY = "accuracy"  # fraction of rows labelled through feedback that were predicted right (docs/feedback.md)
MAE = "mae"  # mean absolute error of rows labelled through feedback (regression models)
BUILTINS = ("errorRate", "latencyP95Seconds", "latencyP99Seconds", ACCURACY, MAE, AGREEMENT)
# Builtins whose samples are not the requests answered: what each one counts instead (minSamples applies to it).
SAMPLES_OF = {AGREEMENT: "comparisons", ACCURACY: "labelledRows", MAE: "labelledRows"}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from status (or a datetime) as an aware UTC datetime; None when absent/bad."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class MetricResult:
    """One measured check: a value (None = no data), the samples behind it, or why it could not run."""

    name: str
    value: float | None
    samples: int | None = None
    error: str | None = None


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NO_DATA = "noData"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    """One check: a builtin metric or a query (``{{model}}``, ``{{version}}``, ``{{namespace}}``), with bounds."""

    name: str
    builtin: str | None = None
    query: str | None = None
    min: float | None = None
    max: float | None = None

    def bounds(self) -> str:
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + ([f"<= {self.max:g}"] if self.max is not None else [])
        return " and ".join(parts) or "any value"


DEFAULT_CHECKS = (
    Check("error-rate", builtin="errorRate", max=0.01),
    Check("latency-p99", builtin="latencyP99Seconds", max=0.25),
)


def _get(obj: Any, name: str) -> Any:
    """Attribute of a pydantic model, or key of its camelCase dict form."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def checks_for(analysis: Any) -> tuple[Check, ...]:
    """The checks of a spec's ``analysis`` block; the defaults when it lists none."""
    metrics = _get(analysis, "metrics") if analysis is not None else None
    if not metrics:
        return DEFAULT_CHECKS
    return tuple(Check(_get(m, "name"), _get(m, "builtin"), _get(m, "query"), _get(m, "min"), _get(m, "max"))
                 for m in metrics)


def agreement_check(min_agreement: float) -> Check:
    """The Shadow strategy's own check: the fraction of shadow predictions equal to stable's."""
    return Check(AGREEMENT_CHECK_NAME, builtin=AGREEMENT, min=min_agreement)


def render_query(template: str, *, namespace: str, model: str, version: str) -> str:
    """A custom query with ``{{namespace}}``, ``{{model}}`` and ``{{version}}`` filled in."""
    return (template.replace("{{namespace}}", namespace).replace("{{model}}", model)
            .replace("{{version}}", version))


# -------------------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class CheckVerdict:
    name: str
    outcome: Outcome
    value: float | None
    samples: int | None
    message: str

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


def judge(check: Check, result: MetricResult | None, min_samples: int) -> CheckVerdict:
    """The verdict of one check on one measurement (see the module docstring for the rules)."""
    if result is None:
        return CheckVerdict(check.name, Outcome.ERROR, None, None, "not measured")
    value, samples = result.value, result.samples
    if result.error:
        return CheckVerdict(check.name, Outcome.ERROR, None, samples, result.error)
    if samples is None or samples < min_samples:
        seen = "unknown" if samples is None else str(samples)
        return CheckVerdict(check.name, Outcome.NO_DATA, _finite_or_none(value), samples,
                            f"too few samples: {seen} < minSamples {min_samples}")
    if value is None or math.isnan(value):
        return CheckVerdict(check.name, Outcome.NO_DATA, None, samples, "no data" if value is None else "value is NaN")
    if math.isinf(value):
        return CheckVerdict(check.name, Outcome.FAILED, None, samples, f"value is {value}: outside {check.bounds()}")
    if (check.min is not None and value < check.min) or (check.max is not None and value > check.max):
        return CheckVerdict(check.name, Outcome.FAILED, value, samples, f"{value:.6g} outside {check.bounds()}")
    return CheckVerdict(check.name, Outcome.PASSED, value, samples, f"{value:.6g} within {check.bounds()}")


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


_RANK = {Outcome.FAILED: 3, Outcome.ERROR: 2, Outcome.NO_DATA: 1, Outcome.PASSED: 0}


@dataclass(frozen=True)
class RunVerdict:
    """All checks of one run; the run's outcome is its worst check's (failed > error > no data > passed)."""

    checks: tuple[CheckVerdict, ...]

    @property
    def outcome(self) -> Outcome:
        if not self.checks:
            return Outcome.ERROR
        return max((c.outcome for c in self.checks), key=_RANK.__getitem__)

    def summary(self) -> str:
        bad = [f"{c.name}: {c.message}" for c in self.checks if not c.passed]
        return "; ".join(bad) if bad else "all checks passed"

    def counts_as_failure(self, on_no_data: str, carries_traffic: bool) -> bool:
        """Whether this run adds to ``failedChecks``."""
        outcome = self.outcome
        if outcome is Outcome.FAILED:
            return True
        if outcome is Outcome.ERROR:
            return carries_traffic
        if outcome is Outcome.NO_DATA:
            return on_no_data == "fail"
        return False


def evaluate(checks: Iterable[Check], results: Iterable[MetricResult], min_samples: int) -> RunVerdict:
    """Judge every check against the result of the same name."""
    by_name = {r.name: r for r in results}
    return RunVerdict(tuple(judge(c, by_name.get(c.name), min_samples) for c in checks))


# --------------------------------------------------------------------------------------- status entries


def run_entries(verdict: RunVerdict, at: datetime, window: timedelta) -> list[dict[str, Any]]:
    """``status.analysis`` entries of one run (one per check, same ``at``; the window is in the message)."""
    seconds = int(window.total_seconds())
    entries = []
    for c in verdict.checks:
        entry: dict[str, Any] = {"at": format_time(at), "metric": c.name, "passed": c.passed,
                                 "message": f"[{c.outcome.value}, window {seconds}s] {c.message}"[:1024]}
        if c.value is not None:
            entry["value"] = c.value
        if c.samples is not None:
            entry["samples"] = c.samples
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class LatestRun:
    at: datetime
    passed: bool


def latest_run(entries: Iterable[Mapping[str, Any]]) -> LatestRun | None:
    """The most recent run recorded in ``status.analysis``: its time, and whether every check passed."""
    runs: dict[datetime, bool] = {}
    for entry in entries:
        at = parse_time(entry.get("at"))
        if at is not None:
            runs[at] = runs.get(at, True) and bool(entry.get("passed"))
    if not runs:
        return None
    at = max(runs)
    return LatestRun(at, runs[at])
