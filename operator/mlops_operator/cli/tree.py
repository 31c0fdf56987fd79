"""``kubectl mlops get``: the data of the tree per model (features -> versions -> deployments -> policies -> batch).

Pure: ``models(world)`` returns plain dicts (what ``-o json|yaml`` prints); ``render.tree`` draws them.
A FeatureSet belongs to the models whose versions or policies train on it; one that no model uses is
listed under ``model: null``.
"""

from __future__ import annotations

from typing import Any

from mlops_operator.cli.world import Obj, World, by_age, condition, name, namespace, spec, status


def _training_featureset(obj: Obj) -> str | None:
    sp = spec(obj)
    training = sp.get("training") or (sp.get("template") or {}).get("training") or {}
    return (training.get("featureSet") or {}).get("name") or (status(obj).get("lineage") or {}).get("featureSet")


def _not_ready(obj: Obj) -> dict[str, str] | None:
    cond = condition(obj, "Ready")
    if cond is None or cond.get("status") == "True":
        return None
    return {"reason": cond.get("reason", ""), "message": cond.get("message", "")}


def featureset_row(fs: Obj) -> dict[str, Any]:
    st = status(fs)
    latest = st.get("latestVersion")
    snap = next((v for v in st.get("versions") or () if v.get("version") == latest), {})
    return {"kind": "FeatureSet", "name": name(fs), "phase": st.get("phase"), "latestVersion": latest,
            "rows": snap.get("rows"), "qualityPassed": (st.get("quality") or {}).get("passed"),
            "activeJob": st.get("activeJob"), "notReady": _not_ready(fs)}


def version_row(mv: Obj) -> dict[str, Any]:
    st = status(mv)
    lineage = st.get("lineage") or {}
    fs = lineage.get("featureSet")
    data = f"{fs}@{lineage['featureSetVersion']}" if fs and lineage.get("featureSetVersion") else fs
    return {"kind": "ModelVersion", "name": name(mv), "phase": st.get("phase"), "stage": st.get("stage"),
            "metric": st.get("primaryMetric"), "data": data, "notReady": _not_ready(mv)}


def weights(mdep: Obj) -> dict[str, int]:
    """Percent of live traffic per version (a shadow gets none: it is mirrored, see ``mirrorPercent``)."""
    st, sp = status(mdep), spec(mdep)
    stable, candidate = st.get("stableVersion"), st.get("candidateVersion")
    strategy = (sp.get("strategy") or {}).get("type", "Recreate")
    weight = st.get("canaryWeight") or 0
    out: dict[str, int] = {}
    if candidate and strategy != "Shadow":
        if stable and stable != candidate:
            out[stable] = 100 - weight
        out[candidate] = weight if stable else 100
    elif stable:
        out[stable] = 100
        if candidate:
            out[candidate] = 0
    return out


def last_analysis(mdep: Obj) -> list[dict[str, Any]]:
    """The newest run of each check (``status.analysis`` is newest last)."""
    latest: dict[str, dict[str, Any]] = {}
    for run in status(mdep).get("analysis") or ():
        latest[run.get("metric", "")] = run
    return list(latest.values())


def deployment_row(mdep: Obj) -> dict[str, Any]:
    st, sp = status(mdep), spec(mdep)
    strategy = sp.get("strategy") or {}
    steps = (strategy.get("canary") or {}).get("steps") or []
    row: dict[str, Any] = {
        "kind": "ModelDeployment", "name": name(mdep), "phase": st.get("phase"),
        "strategy": strategy.get("type", "Recreate"), "stable": st.get("stableVersion"),
        "candidate": st.get("candidateVersion"), "weights": weights(mdep), "paused": bool(sp.get("paused")),
        "analysis": [{k: r.get(k) for k in ("metric", "value", "passed", "samples")} for r in last_analysis(mdep)],
        "endpoint": (st.get("endpoint") or {}).get("url"), "notReady": _not_ready(mdep),
    }
    if steps and st.get("candidateVersion") and st.get("currentStep") is not None:
        row["step"] = f"{min(st['currentStep'] + 1, len(steps))}/{len(steps)}"
    if strategy.get("type") == "Shadow":
        row["mirrorPercent"] = (strategy.get("shadow") or {}).get("mirrorPercent", 100)
    if st.get("postPromotion"):
        row["postPromotion"] = st["postPromotion"]
    if st.get("blockedVersions"):
        row["blocked"] = st["blockedVersions"]
    return row


def policy_row(obj: Obj) -> dict[str, Any]:
    st = status(obj)
    if obj.get("kind") == "RetrainPolicy":
        last = st.get("lastTriggered") or {}
        return {"kind": "RetrainPolicy", "name": name(obj), "phase": st.get("phase"), "retrains": st.get("retrains") or 0,
                "active": st.get("active") or [], "lastTrigger": {k: last.get(k) for k in ("source", "at", "modelVersion")
                                                                    if last.get(k)} or None,
                "notReady": _not_ready(obj)}
    best = st.get("best") or {}
    return {"kind": "HyperparameterSearch", "name": name(obj), "phase": st.get("phase"),
            "completed": st.get("completedTrials") or 0, "maxTrials": spec(obj).get("maxTrials"),
            "best": {"trial": best.get("trial"), "value": best.get("value")} if best else None,
            "registered": st.get("registeredVersion"), "notReady": _not_ready(obj)}


def batch_row(bp: Obj) -> dict[str, Any]:
    st = status(bp)
    runs = st.get("runs") or []
    last = runs[-1] if runs else {}
    return {"kind": "BatchPrediction", "name": name(bp), "phase": st.get("phase"),
            "modelVersion": spec(bp).get("modelVersion"), "schedule": spec(bp).get("schedule"),
            "lastRun": last.get("run"), "rows": st.get("rowsScored"), "output": st.get("lastOutputUri"),
            "activeJob": st.get("activeJob"), "notReady": _not_ready(bp)}


def _model_of_batch(world: World, bp: Obj) -> str | None:
    """A BatchPrediction belongs to the model of the ModelVersion it scores with."""
    mv = world.get("ModelVersion", spec(bp).get("modelVersion"), namespace(bp))
    return spec(mv).get("model") if mv is not None else None


def models(world: World, model: str | None = None) -> list[dict[str, Any]]:
    """One entry per (namespace, model), sorted; FeatureSets no model uses come last with ``model: None``."""
    out: list[dict[str, Any]] = []
    for ns in world.namespaces():
        w = world.only(ns)
        owners = w.modelversions + w.modeldeployments + w.retrainpolicies + w.hyperparametersearches
        names = sorted({spec(o).get("model") for o in owners if spec(o).get("model")})
        used: set[str] = set()
        for m in names:
            if model and m != model:
                continue
            mine = [o for o in w.modelversions + w.retrainpolicies + w.hyperparametersearches if spec(o).get("model") == m]
            fs_names = {f for f in map(_training_featureset, mine) if f}
            used |= fs_names
            out.append({
                "namespace": ns, "model": m,
                "features": [featureset_row(f) for f in by_age(w.featuresets) if name(f) in fs_names],
                "versions": [version_row(v) for v in by_age(w.modelversions) if spec(v).get("model") == m],
                "deployments": [deployment_row(d) for d in by_age(w.modeldeployments) if spec(d).get("model") == m],
                "policies": [policy_row(p) for p in by_age(w.retrainpolicies + w.hyperparametersearches)
                             if spec(p).get("model") == m],
                "batch": [batch_row(b) for b in by_age(w.batchpredictions) if _model_of_batch(w, b) == m],
            })
        if model:
            continue
        alone = [f for f in by_age(w.featuresets) if name(f) not in used]
        if alone:
            out.append({"namespace": ns, "model": None, "features": [featureset_row(f) for f in alone],
                        "versions": [], "deployments": [], "policies": []})
    return out


__all__ = ["models", "weights", "last_analysis", "namespace"]
