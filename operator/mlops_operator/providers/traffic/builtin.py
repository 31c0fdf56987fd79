"""The builtin router as a traffic provider: a durable ConfigMap plus an immediate ``PUT /-/config``.

The ConfigMap is what a router replica reads when it starts, so a restarted router resumes the last
split; the PUT makes a new weight effective at once instead of after the kubelet's volume sync (up to a
minute). Both carry the same document and generation (route_config's generation rule: lower is stale,
equal must be identical). The generation only moves when the content changes, and always past every
generation seen in the ConfigMap or on any replica, so a replica never refuses it as stale.

``set_routes`` writes the ConfigMap first, then PUTs to every replica that is not already on the
document; a replica that refuses or does not answer raises ``TrafficError``, so the pass does not
record a step as taken while part of the traffic still follows the old split. ``get_routes`` reports
every version referenced by the ConfigMap or any replica, and None if a Ready replica cannot be asked.

As a provider (``provider``), the builtin router is also the entry point: its Deployment and the entry
Service selecting it are applied before the routes, and a rollout completes only once one of its pods is
Ready. Its admin token is a Secret created once (random) and read back on every later pass.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol

import httpx

from mlops_operator.builders import serving as build
from mlops_operator.builders.serving import (
    PORT,
    ROUTER_CONFIG_KEY,
    build_router_configmap,
    router_document,
    router_name,
    router_selector,
)
from mlops_operator.logic.rollout.state import EntryInfo, RouteObservation, Routes
from mlops_operator.providers import kube
from mlops_operator.providers.kube import apply_object
from mlops_operator.providers.traffic.base import ServingContext, TrafficError
from mlops_operator.providers.traffic.deployments import DeploymentServing, deployments_path


@dataclass(frozen=True)
class RouterPod:
    url: str      # http://<pod IP>:8080
    ready: bool   # behind the entry Service (receives traffic)


class ConfigStore(Protocol):
    """Where the durable copy of the router document lives."""

    async def read(self) -> dict[str, Any] | None: ...
    async def write(self, document: Mapping[str, Any]) -> None: ...


class ConfigMapStore:
    """The router's ConfigMap (``mdep-<name>-router``, key ``config.json``)."""

    def __init__(self, owner: Mapping[str, Any], model: str):
        self.owner, self.model = owner, model
        meta = owner["metadata"]
        self.path = kube.core_path("configmaps", meta["namespace"], router_name(meta["name"]))

    async def read(self) -> dict[str, Any] | None:
        cm = await kube.get(self.path)
        raw = ((cm or {}).get("data") or {}).get(ROUTER_CONFIG_KEY)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return None  # unreadable: overwritten by the next write
        return doc if isinstance(doc, dict) else None

    async def write(self, document: Mapping[str, Any]) -> None:
        await apply_object(build_router_configmap(self.owner, self.model, document))


async def router_pods(namespace: str, deployment: str) -> list[RouterPod]:
    """The running router replicas of a ModelDeployment (pods with an IP)."""
    pods = await kube.list_pods(namespace, kube.selector(router_selector(deployment)))
    out = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP") or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        out.append(RouterPod(f"http://{status['podIP']}:{PORT}", ready))
    return out


def _content(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if doc is None else {k: v for k, v in doc.items() if k != "generation"}


def _generation(doc: Mapping[str, Any] | None) -> int:
    value = (doc or {}).get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _referenced(doc: Mapping[str, Any]) -> set[str]:
    versions = {(doc.get("stable") or {}).get("version")}
    candidate, shadow = doc.get("candidate") or {}, doc.get("shadow") or {}
    if (candidate.get("weight") or 0) > 0:
        versions.add(candidate.get("version"))
    if (shadow.get("percent") or 0) > 0:
        versions.add(shadow.get("version"))
    return {v for v in versions if v}


class BuiltinRouter:
    name = "builtin"

    def __init__(self, *, namespace: str, deployment: str, model: str, store: ConfigStore,
                 pods: Callable[[], Awaitable[list[RouterPod]]], token: str | None, timeout: float = 3.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.namespace, self.deployment, self.model = namespace, deployment, model
        self._store, self._pods, self._token = store, pods, token
        self._timeout, self._transport = timeout, transport

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        return httpx.AsyncClient(timeout=self._timeout, headers=headers, transport=self._transport)

    async def _pod_documents(self, client: httpx.AsyncClient, pods: list[RouterPod]) -> dict[str, Any]:
        """Each replica's document in effect: a dict, None (no config yet) or an Exception (no answer)."""
        async def one(pod: RouterPod) -> Any:
            try:
                response = await client.get(f"{pod.url}/-/config")
            except httpx.HTTPError as exc:
                return exc
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                return TrafficError(f"{pod.url}: GET /-/config answered {response.status_code}")
            try:
                return response.json()
            except ValueError as exc:
                return exc
        answers = await asyncio.gather(*(one(p) for p in pods))
        return {pod.url: answer for pod, answer in zip(pods, answers)}

    async def set_routes(self, routes: Routes) -> None:
        pods = await self._pods()
        async with self._client() as client:
            seen = await self._pod_documents(client, pods)
            current = await self._store.read()
            doc = router_document(routes, namespace=self.namespace, deployment=self.deployment, model=self.model,
                                  generation=0)
            if current is not None and _content(current) == _content(doc):
                doc["generation"] = _generation(current)
            else:
                known = [_generation(current)] + [_generation(d) for d in seen.values() if isinstance(d, dict)]
                doc["generation"] = max(known) + 1
            if current != doc:
                await self._store.write(doc)
            stale = [pod for pod in pods if seen[pod.url] != doc]
            failures = await asyncio.gather(*(self._put(client, pod, doc) for pod in stale))
        problems = [f for f in failures if f]
        if problems:
            raise TrafficError("router replicas not updated: " + "; ".join(problems))

    async def _put(self, client: httpx.AsyncClient, pod: RouterPod, doc: Mapping[str, Any]) -> str | None:
        try:
            response = await client.put(f"{pod.url}/-/config", json=dict(doc))
        except httpx.HTTPError as exc:
            return f"{pod.url}: {type(exc).__name__}"
        if response.status_code == 200:
            return None
        return f"{pod.url}: PUT /-/config answered {response.status_code} {response.text[:200]}"

    async def get_routes(self) -> RouteObservation | None:
        pods = await self._pods()
        current = await self._store.read()
        async with self._client() as client:
            seen = await self._pod_documents(client, pods)
        referenced: set[str] = _referenced(current) if current else set()
        for pod in pods:
            doc = seen[pod.url]
            if isinstance(doc, dict):
                referenced |= _referenced(doc)
            elif doc is not None and pod.ready:
                return None  # a replica serving traffic that cannot be asked: cannot tell
        weight = ((current or {}).get("candidate") or {}).get("weight", 0) if current else None
        return RouteObservation(frozenset(referenced), weight)


# ------------------------------------------------------------------------------------------- as a provider


async def router_token(owner: Mapping[str, Any], model: str) -> str:
    """The router admin token: created once as a Secret (random), read back on every later pass."""
    meta = owner["metadata"]
    obj = await kube.get(kube.core_path("secrets", meta["namespace"], router_name(meta["name"])))
    if obj is None:
        secret = build.build_router_secret(owner, model, secrets.token_urlsafe(32))
        obj, created = await kube.create(kube.core_path("secrets", meta["namespace"]), secret)
        if created:
            return secret["stringData"][build.ROUTER_TOKEN_KEY]
    return base64.b64decode((obj.get("data") or {}).get(build.ROUTER_TOKEN_KEY, "")).decode()


async def observe_entry(namespace: str, name: str) -> EntryInfo:
    """The builtin router's Deployment (what the entry Service selects)."""
    router = router_name(name)
    deployment = await kube.get(deployments_path(namespace, router))
    if deployment is None or (deployment.get("metadata") or {}).get("deletionTimestamp"):
        return EntryInfo(router, 0)
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    return EntryInfo(router, (deployment.get("status") or {}).get("readyReplicas") or 0, replicas)


async def apply_entry(ctx: ServingContext, routes: Routes) -> None:
    """The router Deployment (one or two replicas) and the entry Service that selects it."""
    await apply_object(build.build_router_deployment(build.RouterInput(
        ctx.owner, ctx.model, ctx.image, replicas=min(2, max(1, ctx.replicas)),
        image_pull_policy=ctx.image_pull_policy, pod=ctx.pod)))
    await apply_object(build.build_entry_service(ctx.owner, ctx.model, router_selector(ctx.name)))


class TokenRouter:
    """``BuiltinRouter`` whose admin token is fetched (or created) on first use."""

    def __init__(self, ctx: ServingContext):
        self.ctx = ctx
        self._router: BuiltinRouter | None = None

    async def _get(self) -> BuiltinRouter:
        if self._router is None:
            namespace, name = self.ctx.namespace, self.ctx.name

            async def pods() -> list[RouterPod]:
                return await router_pods(namespace, name)

            self._router = BuiltinRouter(namespace=namespace, deployment=name, model=self.ctx.model,
                                         store=ConfigMapStore(self.ctx.owner, self.ctx.model), pods=pods,
                                         token=await router_token(self.ctx.owner, self.ctx.model))
        return self._router

    async def set_routes(self, routes: Routes) -> None:
        await (await self._get()).set_routes(routes)

    async def get_routes(self) -> RouteObservation | None:
        return await (await self._get()).get_routes()


def provider(ctx: ServingContext) -> DeploymentServing:
    async def entry(c: ServingContext) -> EntryInfo:
        return await observe_entry(c.namespace, c.name)

    return DeploymentServing("builtin", ctx, TokenRouter(ctx), apply_entry=apply_entry, observe_entry=entry)
