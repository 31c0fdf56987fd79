"""The objects the plugin reasons about, as plain dicts (what the apiserver returns). Pure.

``World`` holds one read of the five kinds plus the Jobs and Pods the operator created; every verb's
data is a function of it, so unit tests build a ``World`` from literal dicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from mlops_operator.builders.job import training_job_name
from mlops_operator.builders.labels import LABEL_COMPONENT, LABEL_MODELVERSION
from mlops_operator.builders.batchprediction import LABEL_BATCHPREDICTION
from mlops_operator.builders.materialize import LABEL_FEATURESET
from mlops_operator.builders.names import label_value
from mlops_operator.cli.kinds import KIND_ORDER
from mlops_operator.logic.rollout.workloads import container_waiting

Obj = dict[str, Any]
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def namespace(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("namespace", "")


def status(obj: Obj | None) -> Obj:
    return (obj or {}).get("status") or {}


def spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def created(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("creationTimestamp") or ""


def condition(obj: Obj | None, type_: str) -> Obj | None:
    for cond in status(obj).get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def by_age(objs: Iterable[Obj]) -> list[Obj]:
    """Oldest first (creationTimestamp, then name): the order versions were made in."""
    return sorted(objs, key=lambda o: (created(o), name(o)))


@dataclass
class World:
    """One namespace's (or, with -A, every namespace's) objects. Lists hold raw API dicts."""

    featuresets: list[Obj] = field(default_factory=list)
    modelversions: list[Obj] = field(default_factory=list)
    modeldeployments: list[Obj] = field(default_factory=list)
    retrainpolicies: list[Obj] = field(default_factory=list)
    hyperparametersearches: list[Obj] = field(default_factory=list)
    batchpredictions: list[Obj] = field(default_factory=list)
    jobs: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Obj]:
        return {"FeatureSet": self.featuresets, "ModelVersion": self.modelversions,
                "ModelDeployment": self.modeldeployments, "RetrainPolicy": self.retrainpolicies,
                "HyperparameterSearch": self.hyperparametersearches, "BatchPrediction": self.batchpredictions,
                "Job": self.jobs, "Pod": self.pods}[kind]

    def get(self, kind: str, obj_name: str | None, ns: str | None = None) -> Obj | None:
        if not obj_name:
            return None
        for obj in self.of_kind(kind):
            if name(obj) == obj_name and (ns is None or namespace(obj) == ns):
                return obj
        return None

    def namespaces(self) -> list[str]:
        return sorted({namespace(o) for k in KIND_ORDER for o in self.of_kind(k)})

    def only(self, ns: str) -> "World":
        """The part of this world in namespace ``ns``."""
        return World(**{f: [o for o in getattr(self, f) if namespace(o) == ns] for f in self.__dataclass_fields__})


# ------------------------------------------------------------------------------------- jobs and pods


def jobs_of(world: World, kind: str, obj: Obj) -> list[Obj]:
    """The Jobs that belong to a ModelVersion (training), FeatureSet (materialize) or BatchPrediction (a run's
    scoring Job), newest last.

    Found by the name the operator records (``status.lineage.job``, ``status.activeJob``), the name it
    derives, and the labels it sets (``mlops.dev/modelversion``, ``mlops.dev/featureset``,
    ``mlops.dev/batchprediction``).
    """
    ns, st = namespace(obj), status(obj)
    if kind == "ModelVersion":
        names = {(st.get("lineage") or {}).get("job"), training_job_name(name(obj))}
        label, component = LABEL_MODELVERSION, "training"
    elif kind == "FeatureSet":
        names = {st.get("activeJob")}
        label, component = LABEL_FEATURESET, "materialize"
    elif kind == "BatchPrediction":
        names = {st.get("activeJob")}
        label, component = LABEL_BATCHPREDICTION, "batch-predict"
    else:
        raise ValueError(f"{kind} has no Jobs of its own: logs are for mv, fs or bp")
    wanted = label_value(name(obj))
    found = [j for j in world.jobs if (not ns or namespace(j) == ns) and (
        name(j) in names or (labels(j).get(label) == wanted and labels(j).get(LABEL_COMPONENT, component) == component))]
    return by_age(found)


def job_for(world: World, kind: str, obj: Obj) -> Obj | None:
    """The Job whose logs explain the object: the running one (``activeJob``), else the newest."""
    jobs = jobs_of(world, kind, obj)
    active = status(obj).get("activeJob") if kind in ("FeatureSet", "BatchPrediction") else None
    for job in jobs:
        if active and name(job) == active:
            return job
    return jobs[-1] if jobs else None


def pods_of_job(world: World, job: Obj) -> list[Obj]:
    """The Job's pods, oldest first (a retried Job has one per attempt)."""
    uid = (job.get("metadata") or {}).get("uid")
    found = []
    for pod in world.pods:
        if namespace(pod) != namespace(job):
            continue
        owners = (pod.get("metadata") or {}).get("ownerReferences") or []
        if any(labels(pod).get(k) == name(job) for k in JOB_NAME_LABELS) or (uid and any(o.get("uid") == uid for o in owners)):
            found.append(pod)
    return by_age(found)


def job_failure(job: Obj) -> tuple[str, str] | None:
    """(reason, message) of a failed Job's ``Failed`` condition, else None."""
    for cond in status(job).get("conditions") or ():
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return cond.get("reason", ""), cond.get("message", "")
    return None


def job_state(job: Obj) -> str:
    st = status(job)
    for cond in st.get("conditions") or ():
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed", "Suspended"):
            return cond["type"]
    if st.get("active"):
        return "Running"
    return "Pending"


def _runtime_summary(message: str) -> dict[str, Any] | None:
    if not message.startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "result" in data else None


def pod_termination(pod: Obj) -> str | None:
    """What ended the pod's container, e.g. ``exit 2 (Error): bad column`` or ``ImagePullBackOff: ...``."""
    for cs in status(pod).get("containerStatuses") or ():
        state = cs.get("state") or {}
        term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            message = (term.get("message") or "").strip()
            reason = term.get("reason", "")
            summary = _runtime_summary(message)
            if summary is not None:  # the runtime's {"result", "reason", "message", "exitCode"} (runtime/job_main.py)
                if summary.get("result") != "Failed":
                    return f"exit {term.get('exitCode')} ({summary.get('result') or reason})"
                reason, message = summary.get("reason") or reason, str(summary.get("message") or "")
            text = f"exit {term.get('exitCode')} ({reason})"
            return f"{text}: {message.splitlines()[-1]}" if message else text
        waiting = container_waiting(cs)
        if waiting:
            return waiting
    return None
