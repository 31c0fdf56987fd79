"""HyperparameterSearch reconciliation: trials are ModelVersions, suggestions come from optuna (pure).

::

    Pending ──first trial recorded──▶ Running ──no new trial due (budget used, grid exhausted or stopped
        early) and none active──▶ Succeeded (best = the best Ready trial) | Failed (no Ready trial)

Each pass (``decide``) first brings the active trials up to date from their ModelVersions (status only),
then does at most ONE thing: create the ModelVersion of a recorded trial, or record the next suggestion.
A trial's parameters are recorded in status (state Pending) before its ModelVersion is created on the next
pass, under a name that is a function of its number (``<search>-t<N>``): a crash in between re-creates
the same trial, and AlreadyExists is success. Suggestions are a function of the recorded history
(``logic.hpo_suggest``), so a restart never changes what is sampled.

Trials. At most ``parallelism`` trials are active (Pending, or Running = its ModelVersion is not Ready,
Rejected or Failed yet); no trial is recorded beyond ``maxTrials`` or the size of a grid. A trial's
value is ``status.metrics[objective.metric]`` of its ModelVersion:

- Ready -> Succeeded with its value (the only trials that can be best);
- Rejected by its gates -> Failed WITH its value and the message "rejected by its gates: ...": the value
  is real information for the sampler (entered as measured but infeasible), but a rejected version is
  never the best (the API's trial states have no Rejected; see the report of this module's author);
- Failed, or a metric that is missing/not finite -> Failed without a value, the reason in the message;
- a ModelVersion deleted (or replaced by someone else's) while Running -> Failed.
A failed trial still uses one trial of the budget and its grid point is not retried (training is
deterministic: it would fail again).

Early stopping (``type: median``). Our trials are single fits with no intermediate values, so Katib's
median rule (stop a trial whose running value trails the median at the same step) has nothing to act
on. Instead the SEARCH stops early when it stops paying off: once ``minTrials`` trials created after the
best Ready trial have finished (any outcome) without beating it, no further trial is recorded (condition
``EarlyStopped``). Trials already running finish and count (one may still become the best); the search then
ends as usual. The stop is kept until ``earlyStopping`` is removed or set to ``none`` (then it resumes).

Best: the best value among Succeeded trials per ``objective.goal``, the earliest trial on a tie;
``status.best = {trial (= its ModelVersion), parameters, value}``. ``registerBest: true``: when the search
Succeeds the best trial's ModelVersion gets the label ``mlops.dev/best-of: <search>`` (metadata only — the
trial ModelVersion is ours, its spec is never touched) and ``status.registeredVersion`` names it; a
ModelDeployment can follow the search with ``track.matchLabels: {mlops.dev/best-of: <search>}``. If a
later resume finds a better trial, the label moves (exactly one version carries it).

Spec edits. ``maxTrials``, ``parallelism``, ``earlyStopping`` and ``registerBest`` may change at any time
and apply on the next pass: raising ``maxTrials`` resumes a search that ended on its budget; lowering
``parallelism`` below the active count stops nothing, it only delays new trials. Every other field
(model, template, space, algorithm, objective) fixes what the recorded trials mean; once a trial exists an
edit of them is refused with ``InvalidSpec`` (reason ``SpecChangeNotSupported``) and no trial starts until
the spec is reverted. The fingerprint compared is carried by each trial ModelVersion (annotation), so
this needs no extra status field. Dangling references (the template's FeatureSet / ModelDeployment) set
``InvalidSpec`` too and likewise hold back new trials, while active ones are still followed.

Retention (``retainBest: N``). Once the search has ended (Succeeded or Failed), every trial outside the best
N Succeeded ones and the registered version is deleted with its artifacts: a pass annotates those lacking
``mlops.dev/delete-artifacts: "true"``, a later one deletes each once Kopf has put its finalizer on it (so
the ModelVersion delete handler is sure to run and remove exactly its prefix). A trial that may be served
(stage Production/Staging) is kept, and the ModelVersion's own protection holds any deletion while a
ModelDeployment routes to it. Condition ``Retention`` (True, ``Pruned``) when nothing is left to do for
this generation; then the trials are not read again. ``retainBest`` may be edited at any time.

Events: TrialCreated, TrialFinished, TrialNameTaken, EarlyStopped, SearchSucceeded / SearchFailed,
BestRegistered / BestTrialMissing, TrialsDeleted, and the InvalidSpec ones of ``logic.references``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.hyperparametersearch import EarlyStoppingType, Goal, HyperparameterSearch
from mlops_operator.builders.names import label_value
from mlops_operator.builders.trial import (
    ANNOTATION_SEARCH_UID,
    ANNOTATION_SPEC,
    LABEL_BEST_OF,
    TrialInput,
    build_trial,
    spec_fingerprint,
    trial_name,
)
from mlops_operator.logic import deletion, hpo_suggest
from mlops_operator.logic.references import Problem, Reference, apply_invalid_spec, training_references
from mlops_operator.logic.status import Outcome, Pass

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
ACTIVE = frozenset({PENDING, RUNNING})
FINISHED = frozenset({SUCCEEDED, FAILED})
MV_READY, MV_REJECTED, MV_FAILED = "Ready", "Rejected", "Failed"
EARLY_STOPPED, REGISTERED, SPEC_CHANGE = "EarlyStopped", "Registered", "SpecChangeNotSupported"
RETENTION = "Retention"
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Needs:
    references: list[Reference] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)  # trial ModelVersions to read


@dataclass(frozen=True)
class World:
    problems: list[Problem] = field(default_factory=list)
    trials: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)  # name -> body (None: absent)


@dataclass(frozen=True)
class LabelPatch:
    """A merge patch of one ModelVersion's labels (a None value removes the label)."""

    name: str
    labels: Mapping[str, str | None]


@dataclass
class SearchOutcome(Outcome):
    """A pass's outcome plus the trial ModelVersions it creates, relabels, marks and deletes (in that order)."""

    create: list[dict[str, Any]] = field(default_factory=list)  # trial ModelVersions (AlreadyExists is success)
    labels: list[LabelPatch] = field(default_factory=list)
    annotate: list[str] = field(default_factory=list)  # trials to mark mlops.dev/delete-artifacts: "true"
    delete: list[tuple[str, str | None]] = field(default_factory=list)  # (trial, uid) to delete


def needs(hps: HyperparameterSearch, status: Mapping[str, Any]) -> Needs:
    """The template's references, every active trial, the newest trial (spec fingerprint) and a best to register."""
    trials = status.get("trials") or []
    names = [t["name"] for t in trials if t.get("state") in ACTIVE]
    if trials:
        names.append(trials[-1]["name"])
    best, registered = (status.get("best") or {}).get("trial"), status.get("registeredVersion")
    if best and best != registered:
        names.append(best)
    names.extend(_retention_victims(hps, status) if _retention_due(hps, status) else [])
    template = hps.spec.template
    return Needs(training_references(template.training, template.gates, prefix="spec.template"),
                 list(dict.fromkeys(names)))


def _retention_due(hps: HyperparameterSearch, status: Mapping[str, Any]) -> bool:
    done = get_condition(status.get("conditions"), RETENTION) or {}
    finished = done.get("status") == "True" and done.get("observedGeneration") == hps.metadata.get("generation")
    return hps.spec.retain_best is not None and status.get("phase") in (SUCCEEDED, FAILED) and not finished


def _retention_victims(hps: HyperparameterSearch, status: Mapping[str, Any]) -> list[str]:
    assert hps.spec.retain_best is not None
    registered = [status["registeredVersion"]] if status.get("registeredVersion") else []
    return deletion.trials_beyond_best(status.get("trials") or [], hps.spec.retain_best,
                                       hps.spec.objective.goal == Goal.MINIMIZE, protected=registered)


# --------------------------------------------------------------------------------------------- trials


def _metric(mv: Mapping[str, Any], metric: str) -> float | None:
    value = ((mv.get("status") or {}).get("metrics") or {}).get(metric)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _mv_message(mv: Mapping[str, Any]) -> str:
    ready = get_condition((mv.get("status") or {}).get("conditions"), "Ready") or {}
    return ": ".join(x for x in (ready.get("reason"), ready.get("message")) if x) or "no reason given"


def _finish(trial: dict[str, Any], mv: Mapping[str, Any], metric: str) -> None:
    """Record the outcome of a trial whose ModelVersion is Ready, Rejected or Failed."""
    phase, value = (mv.get("status") or {}).get("phase"), _metric(mv, metric)
    trial.pop("value", None)
    trial.pop("message", None)
    if phase == MV_READY and value is not None:
        trial.update(state=SUCCEEDED, value=value)
        return
    trial["state"] = FAILED
    if phase == MV_FAILED:
        trial["message"] = f"training failed: {_mv_message(mv)}"
    elif value is None:
        trial["message"] = f"ModelVersion is {phase} without a finite {metric} in status.metrics ({_mv_message(mv)})"
    else:
        trial.update(value=value, message=f"rejected by its gates: {_mv_message(mv)}")
    trial["message"] = trial["message"][:MAX_MESSAGE]


def _params_text(trial: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((trial.get("parameters") or {}).items()))


class _Pass(Pass):
    outcome = SearchOutcome
    condition_limit = MAX_MESSAGE

    def __init__(self, hps: HyperparameterSearch, status: Mapping[str, Any], world: World, now: datetime) -> None:
        super().__init__(hps.metadata, status, now)
        self.hps, self.spec, self.world = hps, hps.spec, world
        self.name, self.uid = hps.metadata["name"], hps.metadata.get("uid", "")
        self.trials: list[dict[str, Any]] = self.status.setdefault("trials", [])
        self.create: list[dict[str, Any]] = []
        self.labels: list[LabelPatch] = []
        self.annotate: list[str] = []
        self.delete: list[tuple[str, str | None]] = []

    def ours(self, mv: Mapping[str, Any] | None) -> bool:
        return mv is not None and (mv["metadata"].get("annotations") or {}).get(ANNOTATION_SEARCH_UID) == self.uid

    def done(self, **more: Any) -> SearchOutcome:
        if not self.trials:
            self.status.pop("trials", None)
        return super().done(create=self.create, labels=self.labels, annotate=self.annotate, delete=self.delete, **more)

    # -- 1. follow the active trials

    def refresh(self) -> None:
        metric = str(self.spec.objective.metric)
        for number, trial in enumerate(self.trials, start=1):
            if trial.get("state") not in ACTIVE or trial["name"] not in self.world.trials:
                continue
            mv = self.world.trials[trial["name"]]
            if not self.ours(mv):
                if trial["state"] == RUNNING:
                    why = "was deleted" if mv is None else "was replaced by an object this search did not create"
                    trial.update(state=FAILED, message=f"ModelVersion {trial['name']} {why} before it finished")
                    self.event("Warning", "TrialFinished",
                               f"trial {number} ({trial['name']}) Failed: {trial['message']}")
                elif mv is not None:
                    self.rename(trial, number)
                continue
            assert mv is not None
            if trial["state"] == PENDING:
                trial["state"] = RUNNING
                self.event("Normal", "TrialCreated", f"trial {number} started as ModelVersion {trial['name']} "
                                                     f"({_params_text(trial)})")
            if (mv.get("status") or {}).get("phase") in (MV_READY, MV_REJECTED, MV_FAILED):
                _finish(trial, mv, metric)
                result = f"{metric}={trial['value']:.6g}" if "value" in trial else ""
                detail = "; ".join(x for x in (result, trial.get("message", "")) if x)
                self.event("Normal" if trial["state"] == SUCCEEDED else "Warning", "TrialFinished",
                           f"trial {number} ({trial['name']}) {trial['state']}: {detail}"[:MAX_MESSAGE])

    def rename(self, trial: dict[str, Any], number: int) -> None:
        """The trial's name holds an object this search did not create (e.g. a trial of a deleted search
        of the same name, which outlives it): take the fallback name once, else give the trial up."""
        taken, fallback = trial["name"], trial_name(self.name, number, self.uid)
        if taken == fallback:
            trial.update(state=FAILED,
                         message=f"ModelVersion names {taken} are taken by objects this search did not create")
            self.event("Warning", "TrialFinished", f"trial {number} Failed: {trial['message']}")
            return
        trial["name"] = fallback
        self.event("Warning", "TrialNameTaken", f"trial {number}: ModelVersion {taken} exists and was not created "
                                                f"by this search; the trial is named {fallback}")

    # -- 2. validation

    def spec_problems(self) -> list[Problem]:
        problems = [Problem("InvalidSearchSpace", p) for p in hpo_suggest.space_problems(self.spec.space)]
        recorded = next((mv["metadata"]["annotations"].get(ANNOTATION_SPEC)
                         for t in reversed(self.trials)
                         if self.ours(mv := self.world.trials.get(t["name"]))), None)
        if recorded and recorded != spec_fingerprint(self.spec):
            problems.append(Problem(SPEC_CHANGE, "spec changes other than maxTrials, parallelism, earlyStopping "
                                                 "and registerBest are not supported after the first trial; "
                                                 "revert the edit, or create a new HyperparameterSearch"))
        return problems

    # -- 3. the one action

    def best(self) -> dict[str, Any] | None:
        done = [t for t in self.trials if t.get("state") == SUCCEEDED and t.get("value") is not None]
        if not done:
            return None
        sign = -1.0 if self.spec.objective.goal == Goal.MINIMIZE else 1.0
        top = max(done, key=lambda t: (sign * t["value"], -self.trials.index(t)))
        return {k: v for k, v in {"trial": top["name"], "parameters": top.get("parameters"),
                                  "value": top["value"]}.items() if v is not None}

    def early_stopped(self, best: Mapping[str, Any] | None) -> bool:
        rule = self.spec.early_stopping
        enabled = rule is not None and rule.type == EarlyStoppingType.MEDIAN
        was = (get_condition(self.status.get("conditions"), EARLY_STOPPED) or {}).get("status") == "True"
        if not enabled:
            if was:
                self.condition(EARLY_STOPPED, "False", "Disabled", "earlyStopping is off; the search goes on")
            return False
        if was:
            return True
        if best is None:
            return False
        assert rule is not None
        at = next(i for i, t in enumerate(self.trials) if t["name"] == best["trial"])
        since = [t for t in self.trials[at + 1:] if t.get("state") in FINISHED]
        if len(since) < rule.min_trials:
            return False
        message = (f"{len(since)} trials finished after the best ({best['trial']}, "
                   f"{self.spec.objective.metric}={best['value']:.6g}) without beating it; no new trial starts")
        self.condition(EARLY_STOPPED, "True", "NoImprovement", message)
        self.event("Normal", EARLY_STOPPED, message)
        return True

    def budget(self) -> int:
        grid = hpo_suggest.grid_size(self.spec.space) if self.spec.algorithm == "grid" else None
        return min(self.spec.max_trials, grid) if grid is not None else self.spec.max_trials

    def act(self, stopped: bool) -> None:
        """Create the first recorded trial not created yet; else record the next suggestion if one is due."""
        for number, trial in enumerate(self.trials, start=1):
            if trial.get("state") == PENDING and self.world.trials.get(trial["name"], {}) is None:
                self.create.append(build_trial(TrialInput(self.name, self.uid, self.spec, number, trial["name"],
                                                          trial.get("parameters") or {})))
                return
        active = sum(1 for t in self.trials if t.get("state") in ACTIVE)
        if stopped or active >= self.spec.parallelism or len(self.trials) >= self.budget():
            return
        number = len(self.trials) + 1
        params = hpo_suggest.suggest(self.spec, [_past(t) for t in self.trials], hpo_suggest.search_seed(self.name))
        self.trials.append({"name": trial_name(self.name, number), "parameters": params, "state": PENDING})

    # -- 4. phase, best, registration

    def settle(self, best: dict[str, Any] | None, stopped: bool, problems: list[Problem]) -> None:
        before = self.status.get("phase")
        active = sum(1 for t in self.trials if t.get("state") in ACTIVE)
        finished = sum(1 for t in self.trials if t.get("state") in FINISHED)
        self.status["completedTrials"] = finished
        if best is None:
            self.status.pop("best", None)
        else:
            self.status["best"] = best
        ended = stopped or len(self.trials) >= self.budget()
        metric = self.spec.objective.metric
        best_text = f"best {best['trial']} {metric}={best['value']:.6g}" if best else "no Ready trial"
        progress = f"{finished}/{len(self.trials)} trials finished, {active} active; {best_text}"
        if not self.trials:
            phase = PENDING
            reason, message = (problems[0].reason, problems[0].message) if problems else (PENDING, "no trial yet")
        elif active or not ended:
            phase, reason, message = RUNNING, problems[0].reason if problems else RUNNING, progress
        else:
            phase = SUCCEEDED if best else FAILED
            reason, message = ("SearchSucceeded", progress) if best else ("NoReadyTrial", progress)
        self.status["phase"] = phase
        self.condition("Ready", "True" if phase == SUCCEEDED else "False", reason, message)
        if phase != before and phase in (SUCCEEDED, FAILED):
            self.event("Normal" if best else "Warning", "SearchSucceeded" if best else "SearchFailed", message)
        self.recovered()
        if phase == SUCCEEDED:
            self.register(best)

    def register(self, best: Mapping[str, Any] | None) -> None:
        """Move the ``mlops.dev/best-of`` label to the best trial (or off it when registerBest is false)."""
        want = best["trial"] if best and self.spec.register_best else None
        current = self.status.get("registeredVersion")
        if want == current:
            return
        if want is not None:
            if want not in self.world.trials:
                return  # read on the next pass (needs() asks for the recorded best)
            if not self.ours(self.world.trials[want]):
                message = f"ModelVersion {want} of the best trial no longer exists; nothing is labelled"
                if (get_condition(self.status.get("conditions"), REGISTERED) or {}).get("reason") != "BestTrialMissing":
                    self.event("Warning", "BestTrialMissing", message)
                self.condition(REGISTERED, "False", "BestTrialMissing", message)
                want = None
            else:
                self.labels.append(LabelPatch(want, {LABEL_BEST_OF: label_value(self.name)}))
                message = f"ModelVersion {want} is labelled {LABEL_BEST_OF}={label_value(self.name)}"
                self.condition(REGISTERED, "True", REGISTERED, message)
                self.event("Normal", "BestRegistered", message)
        if current and current != want:
            self.labels.append(LabelPatch(current, {LABEL_BEST_OF: None}))
        if want is None:
            self.status.pop("registeredVersion", None)
        else:
            self.status["registeredVersion"] = want


    # -- 5. retention

    def retain(self) -> None:
        """Annotate, then delete, the trials outside the best ``retainBest`` (see the module docstring)."""
        if not _retention_due(self.hps, self.status):
            return
        victims = _retention_victims(self.hps, self.status)
        if any(name not in self.world.trials for name in victims):
            return  # read on the next pass (needs() asks for them once the search has ended)
        waiting, deleted = [], []
        for name in victims:
            body = self.world.trials[name]
            step = deletion.prune_step(body if self.ours(body) else None, delete_artifacts=True)
            if step == deletion.Prune.ANNOTATE:
                self.annotate.append(name)
            elif step == deletion.Prune.DELETE:
                assert body is not None
                self.delete.append((name, body["metadata"].get("uid")))
                deleted.append(name)
            if step in (deletion.Prune.ANNOTATE, deletion.Prune.WAIT, deletion.Prune.DELETE):
                waiting.append(name)
        keep = self.spec.retain_best
        if deleted:
            self.event("Normal", "TrialsDeleted", f"deleting trial ModelVersions {', '.join(deleted)} with their "
                                                  f"artifacts: outside the best {keep}"[:MAX_MESSAGE])
        if not waiting:
            kept = [t["name"] for t in self.trials if t["name"] not in victims]
            self.condition(RETENTION, "True", "Pruned", f"kept {', '.join(kept) or 'no trial'} "
                                                        f"(the best {keep}); {len(victims)} other trial(s) deleted")


def _past(trial: Mapping[str, Any]) -> hpo_suggest.Past:
    state, value = trial.get("state"), trial.get("value")
    if state == SUCCEEDED:
        outcome = hpo_suggest.COMPLETE
    elif state in ACTIVE:
        outcome = hpo_suggest.RUNNING
    else:
        outcome = hpo_suggest.INFEASIBLE if value is not None else hpo_suggest.FAILED
    return hpo_suggest.Past(trial.get("parameters") or {}, outcome, value)


def decide(hps: HyperparameterSearch, status: Mapping[str, Any], world: World, now: datetime) -> SearchOutcome:
    """The next step for ``hps``; see the module docstring."""
    p = _Pass(hps, status, world, now)
    p.status["observedGeneration"] = p.generation
    p.refresh()
    problems = list(world.problems) + p.spec_problems()
    p.status["conditions"], events = apply_invalid_spec(p.status.get("conditions"), problems,
                                                        generation=p.generation, now=now)
    p.events.extend(events)
    best = p.best()
    stopped = p.early_stopped(best)
    if not problems:
        p.act(stopped)
    p.settle(best, stopped, problems)
    p.retain()
    return p.done()

