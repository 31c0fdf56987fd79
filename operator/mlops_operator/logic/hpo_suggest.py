"""The next trial's hyperparameters, from optuna, rebuilt from the recorded history on every call (pure).

Why rebuild instead of keeping a study: the operator holds nothing between passes (it may restart, or
another replica may take over), while the search's status lists every trial with its parameters and
outcome. A fresh in-memory study is filled with exactly that history and asked for one trial. The
sampler's seed is derived from (the search's seed, the trial number), so the answer is a function of the
recorded history only: the same status yields the same suggestion after a restart, and no two trials
share a random stream (a sampler re-seeded identically on every pass would otherwise repeat itself).

Samplers (``spec.algorithm``):

- ``grid`` -> ``GridSampler`` over the ``values`` of every entry (the CRD's CEL rule already refuses
  min/max with grid). While the grid lasts optuna gives trial *N* the *N*-th point of the grid in a
  seeded shuffled order, so the grid is covered without repeats; ``grid_size`` tells the caller when it
  is exhausted (optuna itself would start re-evaluating points).
- ``random`` -> ``RandomSampler``.
- ``bayesian`` -> ``TPESampler`` (constant liar for running trials), exploring randomly for the first
  ``startup_trials`` trials: half the budget, at least 2 and at most optuna's default 10.

Encoding: an entry with ``values`` is a categorical over the value *indices*, so any JSON value works and
values Python would call equal (1, 1.0, true) stay distinct; a range is an ``IntDistribution`` (type int:
the integers in [min, max]) or a ``FloatDistribution``, log-uniform with ``scale: log``. Floats are rounded
to 6 significant digits (readable in status; clamped so they stay in range).

History (``Past.outcome``): ``complete`` (a Ready trial's value) -> COMPLETE; ``infeasible`` (measured but
rejected by its gates) -> COMPLETE with a violated constraint, so TPE learns about the region without
aiming at it; ``failed`` -> FAIL; ``running`` -> RUNNING (grid skips its point, TPE's constant liar
spreads parallel trials). A recorded trial whose parameters no longer fit the space is entered as FAIL
without parameters, which keeps trial numbers (and so the grid order) aligned with the status list.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from mlops_operator.api.v1alpha1.hyperparametersearch import Algorithm, Goal, HyperparameterSearchSpec, ParamRange

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per pass: its INFO lines are noise

RUNNING, COMPLETE, INFEASIBLE, FAILED = "running", "complete", "infeasible", "failed"
MAX_STARTUP_TRIALS = 10  # optuna's default n_startup_trials
_SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class Past:
    """One recorded trial as the sampler sees it."""

    parameters: Mapping[str, Any]
    outcome: str  # running | complete | infeasible | failed
    value: float | None = None


def _int_bounds(r: ParamRange) -> tuple[int, int]:
    assert r.min is not None and r.max is not None
    return math.ceil(r.min), math.floor(r.max)


def space_problems(space: Mapping[str, ParamRange]) -> list[str]:
    """What makes a space unsearchable beyond what the CRD checks (an int range holding no integer)."""
    problems = []
    for name, r in sorted(space.items()):
        if r.values is None and r.type == "int":
            low, high = _int_bounds(r)
            if low > high or (r.scale == "log" and low < 1):
                problems.append(f"spec.space.{name}: no usable integer in [{r.min}, {r.max}]"
                                + (" with scale log (needs an integer >= 1)" if r.scale == "log" else ""))
    return problems


def grid_size(space: Mapping[str, ParamRange]) -> int | None:
    """Number of points of the grid when every entry lists values, else None (a range is not a grid)."""
    if any(r.values is None for r in space.values()):
        return None
    return math.prod(len(r.values or ()) for r in space.values())


def search_seed(key: str) -> int:
    """A stable 32-bit seed for a search (from its name: the same manifest samples the same trials)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def _trial_seed(seed: int, number: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "big")


def distributions(space: Mapping[str, ParamRange]) -> dict[str, BaseDistribution]:
    """The optuna distribution of every entry (values -> categorical over indices)."""
    dists: dict[str, BaseDistribution] = {}
    for name, r in sorted(space.items()):
        if r.values is not None:
            dists[name] = CategoricalDistribution(list(range(len(r.values))))
        elif r.type == "int":
            low, high = _int_bounds(r)
            dists[name] = IntDistribution(low, high, log=r.scale == "log")
        else:
            assert r.min is not None and r.max is not None
            dists[name] = FloatDistribution(float(r.min), float(r.max), log=r.scale == "log")
    return dists


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _internal(r: ParamRange, value: Any) -> Any:
    """The optuna value of a recorded parameter (an index for values); ValueError when it does not fit."""
    if r.values is not None:
        wanted = _canonical(value)
        for index, candidate in enumerate(r.values):
            if _canonical(candidate) == wanted:
                return index
        raise ValueError(f"{value!r} is not one of the values")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    if r.type == "int":
        if value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    return float(value)


def _external(r: ParamRange, value: Any) -> Any:
    """The parameter the trial trains with, from optuna's value."""
    if r.values is not None:
        return r.values[int(value)]
    if r.type == "int":
        return int(value)
    assert r.min is not None and r.max is not None
    rounded = float(f"{float(value):.{_SIGNIFICANT_DIGITS}g}")
    return min(max(rounded, float(r.min)), float(r.max))


def _frozen(space: Mapping[str, ParamRange], dists: Mapping[str, BaseDistribution],
            past: Past) -> optuna.trial.FrozenTrial:
    state = {RUNNING: TrialState.RUNNING, COMPLETE: TrialState.COMPLETE, INFEASIBLE: TrialState.COMPLETE,
             FAILED: TrialState.FAIL}[past.outcome]
    value = past.value if state == TrialState.COMPLETE else None
    if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
        state, value = TrialState.FAIL, None
    try:
        params = {name: _internal(r, past.parameters[name]) for name, r in space.items()}
        return create_trial(state=state, value=value, params=params, distributions=dict(dists),
                            constraints={"gates": 1.0} if past.outcome == INFEASIBLE else None)
    except (KeyError, ValueError):
        return create_trial(state=TrialState.FAIL)


def startup_trials(max_trials: int) -> int:
    """Random trials TPE runs before modelling: half the budget, within [2, 10]."""
    return min(MAX_STARTUP_TRIALS, max(2, max_trials // 2))


def _sampler(spec: HyperparameterSearchSpec, seed: int, number: int) -> optuna.samplers.BaseSampler:
    if spec.algorithm == Algorithm.GRID:
        grid = {name: list(range(len(r.values or ()))) for name, r in spec.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)  # the same shuffle on every pass
    if spec.algorithm == Algorithm.BAYESIAN:
        return optuna.samplers.TPESampler(seed=_trial_seed(seed, number),
                                          n_startup_trials=startup_trials(spec.max_trials))
    return optuna.samplers.RandomSampler(seed=_trial_seed(seed, number))


def suggest(spec: HyperparameterSearchSpec, history: Sequence[Past], seed: int) -> dict[str, Any]:
    """The parameters of trial number ``len(history)`` (0-based) given every earlier trial."""
    dists = distributions(spec.space)
    direction = "minimize" if spec.objective.goal == Goal.MINIMIZE else "maximize"
    study = optuna.create_study(direction=direction, sampler=_sampler(spec, seed, len(history)))
    for past in history:
        study.add_trial(_frozen(spec.space, dists, past))
    trial = study.ask(dict(dists))
    return {name: _external(spec.space[name], trial.params[name]) for name in sorted(spec.space)}
