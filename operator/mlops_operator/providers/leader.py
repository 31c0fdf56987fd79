"""Leader election: the Lease I/O and the loop that acquires, renews and releases it (decisions in
``logic.leader``), plus the leader label on the operator's own pod.

Two replicas of the operator run; only the one holding the Lease acts. ``main`` keeps Kopf's startup
blocked until ``LeaseElector.acquired`` is set, so a standby never watches, never runs a handler or timer,
and its webhook answers 503. The leader renews every ``retry_period``; when it has not renewed for
``renew_deadline`` it calls ``on_lost`` (``main`` exits the process at once, as Kubernetes' own controllers
do: a half-stopped operator is worse than a restarted standby).

The elector runs on a thread of its own with its own event loop (``ElectorThread``), as client-go runs
it in a goroutine of its own: a handler or a burst of Kopf work that holds the operator's event loop for
seconds (a startup listing thousands of objects on a busy node) must never delay a renewal past the renew
deadline, or the leader exits and a second handover follows the first. Its Lease calls run on one more
dedicated thread, not the shared default executor; each is bounded by the time left before the deadline.

RBAC (a Role in the operator's namespace): ``leases`` get, create, update; ``pods`` patch (the label).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Awaitable, Callable, Coroutine

from mlops_operator.logic import leader as logic
from mlops_operator.providers import kube

log = logging.getLogger(__name__)

LEADER_LABEL = "mlops.dev/leader"  # "true" on the pod holding the lease: the Service selects it
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")


def lease_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{kube._q(namespace)}/leases"
    return base + (f"/{kube._q(name)}" if name else "")


async def _call(method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_executor, lambda: kube._request_sync(
            method, path, body=body, content_type=content_type))
    except kube.KubeError:
        raise
    except Exception as exc:  # ApiException, urllib3 errors, OSError: translated like every other call
        raise kube._translate(exc, f"{method} {path}") from exc


@dataclass(frozen=True)
class LeaseApi:
    """The three Lease calls (parameters, so the elector is tested against fakes as well as the apiserver).
    ``get`` returns None for a missing lease; ``create`` raises ``kube.Conflict`` when it exists;
    ``update`` raises ``kube.Conflict`` on a stale resourceVersion."""

    get: Callable[[str, str], Awaitable[dict[str, Any] | None]]
    create: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    update: Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _get(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await _call("GET", lease_path(namespace, name))
    except kube.KubeError as exc:
        if exc.status == 404:
            return None
        raise


async def _create(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return await _call("POST", lease_path(namespace), body)


async def _update(namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return await _call("PUT", lease_path(namespace, name), body)


KUBE_LEASES = LeaseApi(_get, _create, _update)


async def set_pod_label(namespace: str, pod: str, leader: bool) -> None:
    """Put (or remove) the leader label on our own pod: a merge patch of one label, nothing else."""
    body = {"metadata": {"labels": {LEADER_LABEL: "true" if leader else None}}}
    await _call("PATCH", kube.core_path("pods", namespace, pod), body, content_type="application/merge-patch+json")


class LeaseElector:
    """Campaigns for ``namespace/name`` as ``identity`` until it holds the lease, then renews it.

    ``acquired`` is set once leading; ``on_acquired(leaderless_seconds | None)`` runs then, ``on_lost()``
    when renewals failed for ``renew_deadline`` (or another holder appeared) — the loop ends there.
    ``release()`` (clean shutdown) hands the lease over at once."""

    def __init__(self, identity: str, namespace: str, name: str, timings: logic.Timings = logic.Timings(),
                 api: LeaseApi = KUBE_LEASES, *, on_acquired: Callable[[float | None], Awaitable[None]] | None = None,
                 on_lost: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.identity, self.namespace, self.name, self.timings = identity, namespace, name, timings
        self.api, self.on_acquired, self.on_lost = api, on_acquired, on_lost
        self.clock, self.wall = clock, wall
        self.view = logic.View()
        self.acquired = asyncio.Event()
        self.lost = False
        self._task: asyncio.Task[None] | None = None
        self._holder_logged: str | None = None

    # ------------------------------------------------------------------ state read by others

    def is_leader(self) -> bool:
        """Holds the lease and renewed it within ``renew_deadline`` (checked now, not at the last tick)."""
        return not self.lost and logic.leading(self.view, self.identity, self.clock(), self.timings)

    @property
    def holder(self) -> str:
        return self.view.record.holder if self.view.record else ""

    # ------------------------------------------------------------------ the loop

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"leader election {self.name}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        await self._campaign()
        await self._renew_until_lost()

    def _body(self, record: logic.LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.view.resource_version:
            metadata["resourceVersion"] = self.view.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": record.to_spec()}

    async def _try_once(self) -> bool:
        """One standby attempt: read, decide, maybe write. True when we now hold the lease."""
        lease = await self.api.get(self.namespace, self.name)
        record = logic.LeaseRecord.from_spec(lease["spec"]) if lease else None
        rv = lease["metadata"]["resourceVersion"] if lease else None
        self.view = logic.observe(self.view, record, rv, self.clock())
        decision = logic.step(self.view, self.identity, self.clock(), self.wall(), self.timings)
        if decision.action == "wait":
            if record and record.holder != self._holder_logged:
                log.info("leader election: %s holds lease %s/%s; standing by", record.holder, self.namespace,
                         self.name)
                self._holder_logged = record.holder
            return False
        assert decision.record is not None
        started = self.clock()
        try:
            if decision.action == "create":
                body = self._body(decision.record)
                body["metadata"].pop("resourceVersion", None)
                stored = await self.api.create(self.namespace, body)
            else:
                stored = await self.api.update(self.namespace, self.name, self._body(decision.record))
        except kube.Conflict:
            return False  # another replica wrote first: read again next time
        self.view = logic.written(self.view, decision.record, stored["metadata"]["resourceVersion"], started)
        gap = logic.leaderless_seconds(record if decision.action == "acquire" else None, decision.record.acquire_time
                                       or self.wall())
        log.info("leader election: %s now holds lease %s/%s (%s%s)", self.identity, self.namespace, self.name,
                 decision.action, f", {gap:.1f}s without a leader" if gap is not None else "")
        if self.on_acquired is not None:
            await self.on_acquired(gap)
        self.acquired.set()
        return True

    async def _campaign(self) -> None:
        while True:
            try:
                if await self._try_once():
                    return
            except kube.KubeError as exc:
                log.warning("leader election: lease %s/%s not readable or writable: %s", self.namespace, self.name,
                            exc)
            await asyncio.sleep(self.timings.retry_period * random.uniform(1.0, logic.JITTER))

    async def _renew_once(self, deadline: float) -> bool:
        """One renewal bounded by ``deadline`` (monotonic). False on failure; raises _Lost when deposed."""
        decision = logic.step(self.view, self.identity, self.clock(), self.wall(), self.timings)
        if decision.action != "renew":
            raise _Lost(f"the lease names {self.holder or 'nobody'}")
        assert decision.record is not None
        started = self.clock()
        try:
            stored = await asyncio.wait_for(self.api.update(self.namespace, self.name, self._body(decision.record)),
                                            timeout=max(0.1, deadline - started))
        except kube.Conflict:
            # Written by someone else since our last renewal: re-read; still ours is fine, otherwise deposed.
            lease = await asyncio.wait_for(self.api.get(self.namespace, self.name), timeout=max(0.1, deadline - started))
            record = logic.LeaseRecord.from_spec(lease["spec"]) if lease else None
            self.view = logic.observe(self.view, record, lease["metadata"]["resourceVersion"] if lease else None,
                                      self.clock())
            if record is None or record.holder != self.identity:
                raise _Lost(f"the lease now names {record.holder if record else 'nothing'}") from None
            return False
        self.view = logic.written(self.view, decision.record, stored["metadata"]["resourceVersion"], started)
        return True

    async def _renew_until_lost(self) -> None:
        reason = f"not renewed for {self.timings.renew_deadline:g}s"
        try:
            while True:
                await asyncio.sleep(self.timings.retry_period)
                assert self.view.renewed_at is not None
                deadline = self.view.renewed_at + self.timings.renew_deadline
                renewed = False
                while not renewed and self.clock() < deadline:
                    try:
                        renewed = await self._renew_once(deadline)
                    except (kube.KubeError, asyncio.TimeoutError) as exc:
                        log.warning("leader election: renewing lease %s/%s failed: %s", self.namespace, self.name,
                                    exc or type(exc).__name__)
                    if not renewed:
                        await asyncio.sleep(min(self.timings.retry_period / 2, max(0.0, deadline - self.clock())))
                if not renewed:
                    break
        except _Lost as exc:
            reason = str(exc)
        self.lost = True
        log.error("leader election: %s lost lease %s/%s (%s)", self.identity, self.namespace, self.name, reason)
        if self.on_lost is not None:
            self.on_lost()

    async def release(self) -> None:
        """Clean shutdown of the leader: stop renewing and write the lease free, so the standby takes it
        within one retry period instead of a whole lease duration."""
        await self.stop()
        if not self.is_leader() or self.view.record is None:
            return
        record = logic.released(self.view.record, self.wall())
        try:
            await asyncio.wait_for(self.api.update(self.namespace, self.name, self._body(record)),
                                   timeout=self.timings.retry_period)
            log.info("leader election: %s released lease %s/%s", self.identity, self.namespace, self.name)
        except (kube.KubeError, asyncio.TimeoutError) as exc:
            log.warning("leader election: releasing lease %s/%s failed (it expires on its own): %s",
                        self.namespace, self.name, exc or type(exc).__name__)
        self.lost = True


class ElectorThread:
    """Runs ``elector`` on a daemon thread with an event loop of its own. Its callbacks (``on_acquired``,
    ``on_lost``) run on that thread; ``is_leader()`` reads one immutable view, safe from any thread."""

    def __init__(self, elector: LeaseElector) -> None:
        self.elector = elector
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"leader election {elector.name}")

    async def until_leading(self) -> None:
        """Start campaigning (once) and return when this replica holds the lease."""
        caller, leading = asyncio.get_running_loop(), asyncio.Event()

        async def campaign() -> None:
            task = self.elector.start()
            await self.elector.acquired.wait()
            caller.call_soon_threadsafe(leading.set)
            await task

        if not self._thread.is_alive():
            self._thread.start()
            asyncio.run_coroutine_threadsafe(campaign(), self._loop)
        await leading.wait()

    async def _on_thread(self, coro: Coroutine[Any, Any, None]) -> None:
        if not self._thread.is_alive():
            await coro
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def release(self) -> None:
        """``LeaseElector.release`` on the elector's own loop."""
        await self._on_thread(self.elector.release())

    async def stop(self) -> None:
        """Stop campaigning or renewing without releasing (tests; a crash looks like this to the others)."""
        await self._on_thread(self.elector.stop())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)


class _Lost(Exception):
    """Another replica holds the lease: leadership is gone now, not at the deadline."""
