"""What a ModelVersion's status says about its compiled (ONNX) form, from the trainer's ``metrics.json``.

Pure: the report comes in, ``status.compiled`` and the ``Compiled`` condition's (status, reason, message) go
out. A report the operator cannot trust (missing, malformed, from a trainer before compilation existed)
reads as not compiled: servers then run scikit-learn, which is always a correct answer.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from pydantic import ValidationError

from mlops_operator.api.v1alpha1.modelversion import CompiledStatus

CONDITION = "Compiled"
NOT_RECORDED = "no compiled form recorded for this version (registered artifact, or trained without compilation)"


def compiled_status(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """``status.compiled`` from the ``compiled`` section of ``metrics.json`` (bounded, validated)."""
    raw = (report or {}).get("compiled")
    if not isinstance(raw, Mapping):
        return {"available": False, "reason": NOT_RECORDED}
    doc = {k: v for k, v in raw.items() if not (isinstance(v, float) and not math.isfinite(v))}
    if isinstance(doc.get("reason"), str):
        doc["reason"] = doc["reason"][:1024]
    try:
        parsed = CompiledStatus.model_validate(doc)
    except ValidationError as exc:
        return {"available": False, "reason": f"the training report's compiled section is not valid: "
                                              f"{exc.errors()[0].get('msg', 'invalid')}"}
    out = parsed.model_dump(by_alias=True, exclude_none=True)
    if out["available"] and out.get("format") is None:
        return {"available": False, "reason": "the training report names no compiled format"}
    return out


def compiled_condition(compiled: Mapping[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of the ``Compiled`` condition for ``status.compiled``."""
    if compiled.get("available"):
        return "True", "Compiled", (
            f"served from model.onnx ({compiled.get('format')}, {compiled.get('inputType') or '?'} inputs): "
            f"max difference {compiled.get('maxDifference', 0):.3g} from scikit-learn on "
            f"{compiled.get('rows', '?')} test rows, within tolerance {compiled.get('tolerance', 0):.3g}"
        )
    reason = str(compiled.get("reason") or NOT_RECORDED)
    return "False", "NotCompiled", reason if "scikit-learn" in reason else f"served by scikit-learn: {reason}"
