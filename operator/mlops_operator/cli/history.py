"""``kubectl mlops history <mdep>``: what happened to each version of a ModelDeployment. Pure."""

from __future__ import annotations

from typing import Any

from mlops_operator.cli.world import Obj, name, status


def history(mdep: Obj) -> dict[str, Any]:
    st = status(mdep)
    return {
        "name": name(mdep), "phase": st.get("phase"), "stable": st.get("stableVersion"),
        "candidate": st.get("candidateVersion"), "blocked": st.get("blockedVersions") or [],
        "postPromotion": st.get("postPromotion"),
        "entries": [{k: e.get(k) for k in ("at", "event", "version", "reason")} for e in st.get("history") or ()],
    }
