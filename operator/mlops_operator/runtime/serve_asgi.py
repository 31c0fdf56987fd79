"""The few ASGI pieces `mlops-serve` and `mlops-route` share: bounded body reading, responses, a loopback server.

Both servers are plain ASGI callables rather than FastAPI apps: routing a handful of fixed paths by string
comparison and writing pre-encoded bytes is what keeps the request path lean (FastAPI's dependency
injection, pydantic response models and middleware stack cost more than the model's own `predict`).
They run under uvicorn (httptools + uvloop). A hand-written asyncio/httptools server was measured as an
alternative: ~10 % less router CPU per request, no gain for the model server, so not worth owning.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvicorn

from mlops_operator.runtime.serve_json import dumps

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Latency histogram buckets of both servers. Sub-millisecond buckets matter: the benchmark bar is p99 <= 10 ms,
# the rollout gate p99 <= 250 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The client sent (or announced) more than the configured limit: answer 413, read no further."""

    def __init__(self, limit: int):
        super().__init__(f"request body exceeds the limit of {limit} bytes")


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a request header; `name` must be lower-case (ASGI lower-cases header names)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing early on Content-Length and again while streaming (chunked bodies)."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes = JSON, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, doc: Any) -> None:
    await send_bytes(send, status, dumps(doc))


async def send_error(send: Send, status: int, message: str) -> None:
    """kserve's error shape: `{"error": "<message>"}`."""
    await send_bytes(send, status, dumps({"error": message}))


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight. What is loaded at start (libraries,
    the model) lives as long as the process; without this a full collection walks all of it (100-300 ms
    with sklearn and scipy loaded) and stalls every request whenever a large request's garbage triggers one."""
    gc.collect()
    gc.freeze()


async def lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]]) -> None:
    """Run the ASGI lifespan protocol around the app's own start/stop coroutines."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:  # report, so the server exits instead of serving half-started
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            freeze_heap()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


class Background:
    """Coroutines that live as long as the app: started by the ASGI lifespan, cancelled at its shutdown."""

    def __init__(self, *factories: Callable[[], Awaitable[None]]):
        self._factories = factories
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(factory()) for factory in self._factories]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """Lean uvicorn settings: httptools + uvloop when installed, no access log (metrics count requests), no
    proxy-headers middleware (client addresses are not used), keep-alive longer than the router's pool idles."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="auto",
        loop="auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        timeout_keep_alive=75,
        server_header=False,
        date_header=False,
    )


def serve(app: Any, host: str, port: int) -> None:
    """Blocking entry point of the console scripts (uvicorn handles SIGTERM with a graceful shutdown)."""
    uvicorn.Server(uvicorn_config(app, host, port)).run()


class LoopbackServer:
    """An app served on a real socket inside the running event loop (tests and benchmarks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        # IPPROTO_TCP explicitly: asyncio only disables Nagle on sockets whose proto says TCP, and a 0 here
        # costs every response a 40 ms delayed-ACK stall.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, host, self.port))
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LoopbackServer:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # re-raise the startup failure
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
