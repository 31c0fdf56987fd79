"""``kubectl mlops compare <mv> <mv>``: two ModelVersions side by side. Pure.

Rows are grouped in sections (version, metrics, parameters, lineage, data snapshot, artifact, gates); a
row ``differs`` when the two values are not equal, and numeric metrics carry ``delta`` (b - a). The data
snapshot comes from the FeatureSet's ``status.versions`` entry the version was trained on (when the
FeatureSet still lists it).
"""

from __future__ import annotations

import json
from typing import Any

from mlops_operator.cli.world import Obj, World, created, name, spec, status

SECTIONS = ("version", "metrics", "parameters", "lineage", "data", "artifact", "gates")


def _text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _snapshot(world: World, mv: Obj) -> dict[str, Any]:
    lineage = status(mv).get("lineage") or {}
    fs = world.get("FeatureSet", lineage.get("featureSet"), (mv.get("metadata") or {}).get("namespace"))
    version = lineage.get("featureSetVersion")
    snap = next((v for v in status(fs).get("versions") or () if v.get("version") == version), None) if fs else None
    if not snap:
        return {}
    return {k: snap.get(k) for k in ("version", "rows", "sha256", "createdAt", "trigger", "qualityPassed")
            if snap.get(k) is not None}


def _gates(mv: Obj) -> dict[str, Any]:
    out = {}
    for g in status(mv).get("gateResults") or ():
        verdict = "pass" if g.get("passed") else "FAIL"
        bar = g.get("threshold")
        out[f"{g.get('gate')}.{g.get('metric')}"] = f"{verdict} ({g.get('value')} vs {bar})" if bar is not None else verdict
    return out


def fields(world: World, mv: Obj) -> dict[str, dict[str, Any]]:
    """Every compared value of one version, by section then field."""
    st, sp = status(mv), spec(mv)
    training = sp.get("training") or {}
    primary = st.get("primaryMetric") or {}
    lineage = {k: _text(v) for k, v in (st.get("lineage") or {}).items()}
    artifact = st.get("artifact") or {}
    return {
        "version": {"model": sp.get("model"), "phase": st.get("phase"), "stage": st.get("stage"),
                    "estimator": training.get("estimator") or ("(registered)" if sp.get("artifact") else None),
                    "primaryMetric": primary.get("name"), "created": created(mv)},
        "metrics": dict(st.get("metrics") or {}),
        "parameters": {k: _text(v) for k, v in (st.get("parameters") or training.get("hyperparameters") or {}).items()},
        "lineage": lineage,
        "data": _snapshot(world, mv),
        "artifact": {k: artifact.get(k) for k in ("uri", "sha256", "sizeBytes", "format") if artifact.get(k) is not None},
        "gates": _gates(mv),
    }


def compare(world: World, a: Obj, b: Obj) -> dict[str, Any]:
    fa, fb = fields(world, a), fields(world, b)
    rows: list[dict[str, Any]] = []
    for section in SECTIONS:
        keys = list(fa[section]) + [k for k in fb[section] if k not in fa[section]]
        if section != "version":
            keys = sorted(keys)
        for key in keys:
            va, vb = fa[section].get(key), fb[section].get(key)
            if va is None and vb is None:
                continue
            row = {"section": section, "field": key, "a": va, "b": vb, "differs": va != vb}
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
            if section == "metrics" and numeric:
                row["delta"] = round(vb - va, 6)
            rows.append(row)
    return {"a": name(a), "b": name(b), "rows": rows}
