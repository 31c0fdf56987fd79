"""Look up the objects a spec references (I/O half of ``logic.references``)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from mlops_operator.logic.references import Problem, Reference, check_references
from mlops_operator.providers import kube


async def resolve(refs: Iterable[Reference], namespace: str) -> tuple[dict[Reference, Mapping[str, Any] | None],
                                                                    list[Problem]]:
    """Every referenced object (None when absent) and what is wrong with the references."""
    refs = list(refs)
    targets = {ref: await kube.get_custom(ref.plural, namespace, ref.name) for ref in refs}
    return targets, check_references(refs, targets, namespace)
