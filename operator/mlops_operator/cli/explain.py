"""``kubectl mlops why <kind>/<name>``: the condition chain down to the failing child. Pure.

Each kind knows which child can explain it: a ModelDeployment its candidate (or desired) ModelVersion, a
ModelVersion its training Job (and the Job's last pod) or the FeatureSet it waits for, a FeatureSet its
materialize Job, a RetrainPolicy the versions it created, a HyperparameterSearch its failed trials. The
chain stops at the first healthy object or at a leaf, and ends with the commands to run next.
"""

from __future__ import annotations

from typing import Any

from mlops_operator.cli.kinds import SHORT
from mlops_operator.cli.world import (
    Obj,
    World,
    by_age,
    condition,
    job_failure,
    job_for,
    job_state,
    name,
    namespace,
    pod_termination,
    pods_of_job,
    spec,
    status,
)

HEALTHY = {"FeatureSet": {"Ready"}, "ModelVersion": {"Ready"}, "ModelDeployment": {"Succeeded"},
           "RetrainPolicy": {"Idle", "CoolingDown"}, "HyperparameterSearch": {"Succeeded"},
           "BatchPrediction": {"Succeeded", "Pending", "Running"}}
_PROBLEM_CONDITIONS = ("Retrying", "InvalidSpec", "QualityWarning")


class _Chain:
    def __init__(self, world: World, ns: str) -> None:
        self.world, self.ns = world, ns
        self.steps: list[dict[str, Any]] = []
        self.next: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def ns_flag(self) -> str:
        return f" -n {self.ns}" if self.ns else ""

    def cmd(self, text: str) -> None:
        text = text + self.ns_flag() if text.startswith("kubectl") else text
        if text not in self.next:
            self.next.append(text)

    def step(self, kind: str, obj: Obj, depth: int, detail: list[str] | None = None) -> dict[str, Any]:
        st = status(obj)
        ready = condition(obj, "Ready")
        entry: dict[str, Any] = {"object": f"{SHORT.get(kind, kind.lower())}/{name(obj)}", "kind": kind, "depth": depth,
                                 "phase": st.get("phase")}
        if ready is not None:
            entry["ready"] = {k: ready.get(k) for k in ("status", "reason", "message")}
        problems = [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                    for c in st.get("conditions") or () if c.get("type") in _PROBLEM_CONDITIONS and c.get("status") == "True"]
        if problems:
            entry["conditions"] = problems
        entry["detail"] = list(detail or [])
        self.steps.append(entry)
        return entry

    def get(self, kind: str, obj_name: str | None) -> Obj | None:
        return self.world.get(kind, obj_name, self.ns or None)

    def visit(self, kind: str, obj: Obj, depth: int) -> None:
        key = (kind, name(obj))
        if key in self.seen:
            return
        self.seen.add(key)
        {"ModelDeployment": self.mdep, "ModelVersion": self.mv, "FeatureSet": self.fs,
         "RetrainPolicy": self.rp, "HyperparameterSearch": self.hps, "BatchPrediction": self.bp}[kind](obj, depth)

    def missing(self, kind: str, obj_name: str, depth: int, why: str) -> None:
        self.steps.append({"object": f"{SHORT[kind]}/{obj_name}", "kind": kind, "depth": depth, "phase": None,
                           "detail": [f"not found: {why}"]})
        self.cmd(f"kubectl get {SHORT[kind]}")

    # ---------------------------------------------------------------------------------------- kinds

    def mdep(self, mdep: Obj, depth: int) -> None:
        st, sp, n = status(mdep), spec(mdep), name(mdep)
        phase = st.get("phase")
        detail = []
        if st.get("stableVersion"):
            detail.append(f"stable {st['stableVersion']}" + (f", candidate {st['candidateVersion']} "
                                                             f"at {st.get('canaryWeight') or 0}%" if st.get("candidateVersion") else ""))
        failing = [r for r in st.get("analysis") or () if not r.get("passed")][-3:]
        for run in failing:
            detail.append(f"analysis {run.get('metric')}: value {run.get('value')} "
                          f"({run.get('samples')} samples) did not pass: {run.get('message') or ''}".rstrip(": "))
        history = st.get("history") or []
        if phase == "RolledBack" and history:
            last = history[-1]
            detail.append(f"last: {last.get('event')} {last.get('version')} at {last.get('at')}: {last.get('reason')}")
        self.step("ModelDeployment", mdep, depth, detail)
        ready = condition(mdep, "Ready") or {}
        if phase in HEALTHY["ModelDeployment"] and ready.get("status", "True") == "True":
            return
        if phase == "Paused":
            if sp.get("paused"):
                self.cmd(f"kubectl mlops resume {n}")
            else:
                self.cmd(f"kubectl mlops promote {n}")
                self.cmd(f"kubectl mlops abort {n}")
        elif phase == "RolledBack":
            self.cmd(f"kubectl mlops history {n}")
            self.cmd(f"kubectl mlops retry {n}")
        elif phase == "Degraded":
            self.cmd(f"kubectl get pods -l mlops.dev/model={sp.get('model')}")
            self.cmd(f"kubectl describe mdep {n}")
        follow = st.get("candidateVersion") or st.get("desiredVersion") or sp.get("version")
        mv = self.get("ModelVersion", follow)
        if follow and mv is None:
            self.missing("ModelVersion", follow, depth + 1, f"{'spec.version' if sp.get('version') == follow else 'the version'} "
                                                            f"of ModelDeployment {n}")
            return
        if mv is None and not st.get("stableVersion"):  # track found nothing Ready: the newest version says why
            versions = [v for v in by_age(self.world.modelversions)
                        if spec(v).get("model") == sp.get("model") and (not self.ns or namespace(v) == self.ns)]
            if not versions:
                self.steps.append({"object": f"model {sp.get('model')}", "kind": "Model", "depth": depth + 1, "phase": None,
                                   "detail": [f"no ModelVersion of model {sp.get('model')} exists"]})
                self.cmd("kubectl apply -f manifests/examples/modelversion.yaml")
                return
            mv = versions[-1]
        if mv is not None and (status(mv).get("phase") not in HEALTHY["ModelVersion"]):
            self.visit("ModelVersion", mv, depth + 1)
        elif phase in ("Progressing",):
            self.cmd(f"kubectl mlops get {sp.get('model')} --watch")

    def mv(self, mv: Obj, depth: int) -> None:
        st, sp, n = status(mv), spec(mv), name(mv)
        phase = st.get("phase")
        detail = [f"gate {g.get('gate')} {g.get('metric')}: {g.get('value')} vs {g.get('threshold')}"
                  + (f" ({g['message']})" if g.get("message") else "")
                  for g in st.get("gateResults") or () if not g.get("passed")]
        self.step("ModelVersion", mv, depth, detail)
        if phase in HEALTHY["ModelVersion"]:
            return
        job = job_for(self.world, "ModelVersion", mv)
        if phase in ("Failed", "Training") and job is not None:
            self.job(job, depth + 1)
            self.cmd(f"kubectl mlops logs mv/{n}" + (" -f" if phase == "Training" else ""))
        if phase == "Failed":
            self.cmd(f"kubectl describe mv {n}")
            self.next.append("the spec is immutable: fix it and apply a new ModelVersion")
        elif phase == "Rejected":
            stable = next((status(d).get("stableVersion") for d in self.world.modeldeployments
                           if spec(d).get("model") == sp.get("model") and status(d).get("stableVersion")
                           and (not self.ns or namespace(d) == self.ns)), None)
            if stable and stable != n:
                self.cmd(f"kubectl mlops compare {stable} {n}")
        elif phase in (None, "Pending"):
            fs_name = ((sp.get("training") or {}).get("featureSet") or {}).get("name")
            fs = self.get("FeatureSet", fs_name)
            if fs_name and fs is None:
                self.missing("FeatureSet", fs_name, depth + 1, f"spec.training.featureSet of ModelVersion {n}")
            elif fs is not None and status(fs).get("phase") not in HEALTHY["FeatureSet"]:
                self.visit("FeatureSet", fs, depth + 1)
            else:
                self.cmd(f"kubectl describe mv {n}")

    def fs(self, fs: Obj, depth: int) -> None:
        st, n = status(fs), name(fs)
        quality = st.get("quality") or {}
        detail = [f"quality {v.get('feature')} {v.get('check')}: {v.get('message')}"
                  for v in (quality.get("violations") or [])[:5]]
        self.step("FeatureSet", fs, depth, detail)
        if st.get("phase") in HEALTHY["FeatureSet"]:
            return
        job = job_for(self.world, "FeatureSet", fs)
        if job is not None:
            self.job(job, depth + 1)
            self.cmd(f"kubectl mlops logs fs/{n}" + (" -f" if st.get("phase") == "Materializing" else ""))
        self.cmd(f"kubectl describe fs {n}")

    def rp(self, rp: Obj, depth: int) -> None:
        st, n = status(rp), name(rp)
        history = st.get("history") or []
        last = history[-1:] or ([st["lastTriggered"]] if st.get("lastTriggered") else [])
        detail = [f"last trigger: {h.get('source')} at {h.get('at')} -> {h.get('outcome')}"
                  + (f" ({h['modelVersion']})" if h.get("modelVersion") else "") for h in last]
        self.step("RetrainPolicy", rp, depth, detail)
        if st.get("phase") == "Suspended":
            self.cmd(f"kubectl patch rp {n} --type=merge -p '{{\"spec\":{{\"suspend\":false}}}}'")
        created = [h.get("modelVersion") for h in history + [st.get("lastTriggered") or {}] if h.get("modelVersion")]
        created += list(st.get("active") or [])
        for mv_name in reversed(created):
            mv = self.get("ModelVersion", mv_name)
            if mv is not None and status(mv).get("phase") in ("Failed", "Rejected"):
                self.visit("ModelVersion", mv, depth + 1)
                break
        if st.get("phase") not in HEALTHY["RetrainPolicy"]:
            self.cmd(f"kubectl describe rp {n}")

    def hps(self, hps: Obj, depth: int) -> None:
        st, n = status(hps), name(hps)
        failed = [t for t in st.get("trials") or () if t.get("state") == "Failed"]
        detail = [f"trial {t.get('name')} Failed: {t.get('message') or ''}".rstrip(": ") for t in failed[:3]]
        self.step("HyperparameterSearch", hps, depth, detail)
        if st.get("phase") in HEALTHY["HyperparameterSearch"]:
            return
        for t in failed:
            mv = self.get("ModelVersion", t.get("name"))
            if mv is not None:
                self.visit("ModelVersion", mv, depth + 1)
                break
        self.cmd(f"kubectl describe hps {n}")

    def bp(self, bp: Obj, depth: int) -> None:
        """A BatchPrediction: its last run; what it waits for (a ModelVersion), or the failed run's Job."""
        st, n = status(bp), name(bp)
        runs = st.get("runs") or []
        detail = [f"run {r.get('run')} {r.get('result')}: {r.get('message') or ''}".rstrip(": ") for r in runs[-1:]]
        self.step("BatchPrediction", bp, depth, detail)
        ready = condition(bp, "Ready") or {}
        mv_name = spec(bp).get("modelVersion")
        mv = self.get("ModelVersion", mv_name)
        if ready.get("reason") == "ModelVersionNotFound":
            self.missing("ModelVersion", mv_name, depth + 1, f"spec.modelVersion of BatchPrediction {n}")
        elif ready.get("reason") == "ModelVersionNotReady" and mv is not None:
            self.visit("ModelVersion", mv, depth + 1)
        elif st.get("phase") == "Failed":
            job = job_for(self.world, "BatchPrediction", bp)
            if job is not None:
                self.job(job, depth + 1)
                self.cmd(f"kubectl mlops logs bp/{n}")
        if st.get("phase") not in HEALTHY["BatchPrediction"] or ready.get("status") != "True":
            self.cmd(f"kubectl describe bp {n}")

    def job(self, job: Obj, depth: int) -> None:
        failure = job_failure(job)
        detail = [f"{failure[0]}: {failure[1]}".rstrip(": ")] if failure else []
        pods = pods_of_job(self.world, job)
        for pod in pods[-1:]:
            ended = pod_termination(pod)
            if ended:
                detail.append(f"pod {name(pod)}: {ended}")
        self.steps.append({"object": f"job/{name(job)}", "kind": "Job", "depth": depth, "phase": job_state(job),
                           "detail": detail})


def explain(world: World, kind: str, obj: Obj) -> dict[str, Any]:
    """The chain from ``obj`` down to what fails, and the next commands (``healthy`` when nothing does)."""
    chain = _Chain(world, namespace(obj))
    chain.visit(kind, obj, 0)
    first = chain.steps[0]
    ready = (first.get("ready") or {}).get("status", "True")
    healthy = first.get("phase") in HEALTHY[kind] and ready == "True" and len(chain.steps) == 1
    return {"object": first["object"], "namespace": namespace(obj), "healthy": healthy, "chain": chain.steps,
            "next": chain.next}
