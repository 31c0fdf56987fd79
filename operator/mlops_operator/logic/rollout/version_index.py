"""Which ModelVersions a ModelDeployment pass sees, from an in-memory index instead of a list call. Pure.

A pass needs the versions of its own model (``track`` picks among them) plus any version its spec or
status names (a pinned ``spec.version`` that may belong to another model, the stable version kept while
``spec.model`` changed). Listing every ModelVersion of the namespace on each pass costs one list call
and O(versions in the namespace) per ModelDeployment per pass; the operator instead keeps an index fed
by its watch of ModelVersions (the Kopf index in ``handlers.modeldeployment``) and a pass only looks keys
up in it. Each version is filed under two keys, both carrying the namespace, so equal model or version
names in two namespaces never meet:

- ``model_key(namespace, model)``: every version of that model;
- ``name_key(namespace, name)``: the version of that name.

The index may trail the apiserver by one watch event; that is fine because every pass is
level-triggered: a version that turns Ready is picked up by the next pass after its event arrives.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from mlops_operator.logic.rollout.state import RolloutStatus, VersionInfo, parse_time

IndexKey = tuple[str, str, str]
# The index as a pass reads it: the versions filed under a key (none: an empty iterable).
Lookup = Callable[[IndexKey], Iterable[VersionInfo]]

_BY_MODEL, _BY_NAME = "model", "name"


def model_key(namespace: str, model: str) -> IndexKey:
    return (_BY_MODEL, namespace, model)


def name_key(namespace: str, name: str) -> IndexKey:
    return (_BY_NAME, namespace, name)


def version_info(mv: Mapping[str, Any]) -> VersionInfo:
    """What a rollout decision needs to know about one ModelVersion object (a plain dict)."""
    meta, spec, status = mv.get("metadata") or {}, mv.get("spec") or {}, mv.get("status") or {}
    artifact = status.get("artifact") or {}
    return VersionInfo(name=meta.get("name", ""), model=spec.get("model", ""), phase=status.get("phase"),
                       artifact_uri=artifact.get("uri"), artifact_sha256=artifact.get("sha256"),
                       created_at=parse_time(meta.get("creationTimestamp")), stage=status.get("stage"),
                       labels=dict(meta.get("labels") or {}))


def index_entries(mv: Mapping[str, Any]) -> dict[IndexKey, VersionInfo]:
    """The index keys one ModelVersion is filed under, each with its ``VersionInfo``.

    >>> sorted(index_entries({"metadata": {"namespace": "a", "name": "bc-v1"}, "spec": {"model": "bc"}}))
    [('model', 'a', 'bc'), ('name', 'a', 'bc-v1')]
    """
    meta = mv.get("metadata") or {}
    namespace, info = meta.get("namespace") or "", version_info(mv)
    return {model_key(namespace, info.model): info, name_key(namespace, info.name): info}


def named_versions(version: str | None, st: RolloutStatus) -> set[str]:
    """Every version a ModelDeployment refers to by name: its pinned ``spec.version`` and the versions its
    parsed status names (desired, stable, candidate, aborted, blocked, and the post-promotion window's)."""
    post = (st.post.version, st.post.previous) if st.post else ()
    names = {version, st.desired, st.stable, st.candidate, st.aborted, *st.blocked, *post}
    return {n for n in names if isinstance(n, str) and n}


def observed_versions(lookup: Lookup, namespace: str, model: str, named: Iterable[str]) -> dict[str, VersionInfo]:
    """The versions one pass sees, by name: all of ``model`` in ``namespace``, plus the ``named`` ones that
    exist there (whatever their model, so a pinned version of another model is reported as such)."""
    versions = {v.name: v for v in lookup(model_key(namespace, model))}
    for name in sorted(set(named) - versions.keys()):
        for info in lookup(name_key(namespace, name)):
            versions[info.name] = info
    return versions


def dict_lookup(bodies: Iterable[Mapping[str, Any]]) -> Lookup:
    """A lookup over ModelVersion objects listed at once (the same keys as the operator's index)."""
    index: dict[IndexKey, list[VersionInfo]] = {}
    for body in bodies:
        for key, info in index_entries(body).items():
            index.setdefault(key, []).append(info)
    return lambda key: index.get(key, ())
