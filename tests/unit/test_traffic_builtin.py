"""The builtin traffic provider against real router replicas (mlops-route's app on loopback sockets).

The durable copy is an in-memory store standing in for the ConfigMap (its Kubernetes write is a plain
server-side apply); what is proven here is the protocol with the routers: the generation rule, the
token, replicas that lag or restart, and what ``get_routes`` may conclude from them.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Mapping

import httpx
import pytest

from mlops_operator.logic.rollout.state import Routes
from mlops_operator.providers.traffic.base import TrafficError
from mlops_operator.providers.traffic.builtin import BuiltinRouter, RouterPod
from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror
from mlops_operator.runtime.serve_asgi import LoopbackServer

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token"


class MemoryStore:
    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None
        self.writes = 0

    async def read(self) -> dict[str, Any] | None:
        return self.document

    async def write(self, document: Mapping[str, Any]) -> None:
        self.document, self.writes = dict(document), self.writes + 1


def router_app(token: str | None = TOKEN) -> RouterApp:
    metrics = RouterMetrics()
    return RouterApp(RouterState(metrics), ShadowMirror(metrics.observe), metrics, token=token)


class Replicas:
    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack, self.servers, self.extra = stack, [], []

    async def start(self, token: str | None = TOKEN) -> LoopbackServer:
        server = await self.stack.enter_async_context(LoopbackServer(router_app(token)))
        self.servers.append(server)
        return server

    async def pods(self) -> list[RouterPod]:
        return [RouterPod(s.url, True) for s in self.servers] + list(self.extra)


@pytest.fixture()
async def replicas() -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack:
        yield Replicas(stack)


def make_router(replicas: Replicas, store: MemoryStore, token: str | None = TOKEN) -> BuiltinRouter:
    return BuiltinRouter(namespace="team-a", deployment="bc", model="breast-cancer", store=store,
                         pods=replicas.pods, token=token, timeout=2.0)


async def config_of(server: LoopbackServer) -> dict | None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/-/config")
    return response.json() if response.status_code == 200 else None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_given_new_routes_when_set_then_durable_copy_and_every_replica_hold_the_same_document(replicas):
    a, b = await replicas.start(), await replicas.start()
    store = MemoryStore()
    await make_router(replicas, store).set_routes(Routes("v1", "v2", 10))
    assert store.document["generation"] == 1 and store.document["candidate"]["weight"] == 10
    assert await config_of(a) == store.document == await config_of(b)


async def test_given_the_same_routes_twice_when_set_then_the_generation_does_not_move(replicas):
    await replicas.start()
    store, router = MemoryStore(), None
    router = make_router(replicas, store)
    await router.set_routes(Routes("v1", "v2", 10))
    await router.set_routes(Routes("v1", "v2", 10))
    assert store.document["generation"] == 1 and store.writes == 1
    await router.set_routes(Routes("v1", "v2", 30))
    assert store.document["generation"] == 2


async def test_given_a_restarted_replica_without_config_when_routes_are_set_again_then_it_catches_up(replicas):
    await replicas.start()
    store = MemoryStore()
    router = make_router(replicas, store)
    await router.set_routes(Routes("v1", "v2", 10))
    fresh = await replicas.start()
    assert await config_of(fresh) is None
    await router.set_routes(Routes("v1", "v2", 10))
    assert await config_of(fresh) == store.document and store.document["generation"] == 1


async def test_given_a_replica_ahead_of_a_lost_configmap_when_set_then_the_generation_jumps_past_it(replicas):
    a = await replicas.start()
    first = MemoryStore()
    for weight in (10, 20, 30, 40):
        await make_router(replicas, first).set_routes(Routes("v1", "v2", weight))
    lost = MemoryStore()  # the ConfigMap was deleted and recreated empty
    await make_router(replicas, lost).set_routes(Routes("v1"))
    assert lost.document["generation"] == 5
    assert (await config_of(a))["generation"] == 5 and "candidate" not in await config_of(a)


async def test_given_a_wrong_token_when_set_then_traffic_error_and_the_replica_is_unchanged(replicas):
    a = await replicas.start()
    store = MemoryStore()
    with pytest.raises(TrafficError, match="401"):
        await make_router(replicas, store, token="wrong").set_routes(Routes("v1"))
    assert store.document is not None  # the durable copy is written first: the replica reads it later
    assert await config_of(a) is None


async def test_given_an_unreachable_ready_replica_when_set_then_error_and_routes_cannot_be_told(replicas):
    await replicas.start()
    replicas.extra = [RouterPod(f"http://127.0.0.1:{closed_port()}", ready=True)]
    router = make_router(replicas, MemoryStore())
    with pytest.raises(TrafficError, match="not updated"):
        await router.set_routes(Routes("v1"))
    assert await router.get_routes() is None


async def test_given_an_unreachable_unready_replica_when_reading_routes_then_it_is_ignored(replicas):
    await replicas.start()
    router = make_router(replicas, MemoryStore())
    await router.set_routes(Routes("v1"))
    replicas.extra = [RouterPod(f"http://127.0.0.1:{closed_port()}", ready=False)]
    observed = await router.get_routes()
    assert observed is not None and observed.referenced == frozenset({"v1"})


async def test_given_a_replica_still_on_the_old_split_when_reading_routes_then_the_old_candidate_is_referenced(replicas):
    a, b = await replicas.start(), await replicas.start()
    store = MemoryStore()
    router = make_router(replicas, store)
    await router.set_routes(Routes("v1", "v2", 30))
    assert (await config_of(b))["candidate"]["weight"] == 30
    b_router = BuiltinRouter(namespace="team-a", deployment="bc", model="breast-cancer", store=store,
                             pods=lambda: _only(a), token=TOKEN)
    await b_router.set_routes(Routes("v1"))  # only replica `a` got the rollback so far
    observed = await router.get_routes()
    assert observed.referenced == frozenset({"v1", "v2"})  # the lagging replica still sends to v2
    await router.set_routes(Routes("v1"))
    assert (await router.get_routes()).referenced == frozenset({"v1"})


async def _only(server: LoopbackServer) -> list[RouterPod]:
    return [RouterPod(server.url, True)]


async def test_given_shadow_routes_when_set_then_the_router_accepts_the_mirror(replicas):
    a = await replicas.start()
    router = make_router(replicas, MemoryStore())
    await router.set_routes(Routes("v1", shadow="v3", mirror_percent=40))
    doc = await config_of(a)
    assert doc["shadow"]["percent"] == 40 and doc["shadow"]["version"] == "v3"
    assert (await router.get_routes()).referenced == frozenset({"v1", "v3"})


async def test_given_no_replicas_yet_when_set_then_only_the_durable_copy_is_written():
    async def none() -> list[RouterPod]:
        return []
    store = MemoryStore()
    router = BuiltinRouter(namespace="team-a", deployment="bc", model="breast-cancer", store=store, pods=none, token=TOKEN)
    await router.set_routes(Routes("v1", "v2", 50))
    observed = await router.get_routes()
    assert observed.referenced == frozenset({"v1", "v2"}) and observed.weight == 50
