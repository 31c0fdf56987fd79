"""A minimal HTTP/1.1 keep-alive client for the router's upstreams (asyncio Protocol + httptools parser).

Why not httpx: the router's bar is "added p99 <= 1 ms"; httpx.AsyncClient spends several hundred
microseconds of Python per request (URL model, header objects, anyio, pool bookkeeping), while writing one
pre-built request and parsing the answer with httptools (the C parser uvicorn uses) costs a few tens.
Scope is deliberately small: plain http to in-cluster Services, buffered bodies (model requests and
responses are small and bounded), Content-Length or chunked responses, keep-alive with an idle pool.

A pooled connection may have been closed by the server while idle; if it fails before a single response
byte arrives, the request is sent once more on a fresh connection (predictions are safe to repeat).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

# Never forwarded in either direction (RFC 9110 7.6.1), or rewritten by us.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
     b"proxy-authorization", b"proxy-authenticate", b"host", b"content-length", b"expect"}
)


class UpstreamError(Exception):
    """The upstream could not be reached or answered with something that is not HTTP: the router says 502."""


class _Stale(Exception):
    """A reused connection died before any response byte: safe to retry on a new one."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls the on_* methods while `data_received` feeds it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._received = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._received:
            self._fail(UpstreamError("connection closed in the middle of the response"))
        else:
            self._fail(_Stale())

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(UpstreamResponse(self.parser.get_status_code(), self._headers, b"".join(self._body)))

    # -- use
    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[UpstreamResponse]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._received, self._headers, self._body = False, [], []
        assert self.transport is not None
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Keep-alive connections to one `host:port`; at most `max_idle` are kept between requests."""

    def __init__(self, host: str, port: int, max_idle: int = 64, connect_timeout: float = 2.0):
        self.host, self.port = host, port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._host_header = f"{host}:{port}".encode()
        self._idle: list[_Connection] = []
        self._closed = False  # after close(), in-flight connections are closed on return, not pooled

    async def request(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, timeout: float
    ) -> UpstreamResponse:
        """Send one request; raises UpstreamError for connect failures, timeouts and non-HTTP answers."""
        data = self._encode(method, target, headers, body)
        try:
            async with asyncio.timeout(timeout):
                while self._idle:
                    conn = self._idle.pop()
                    if conn.closed:
                        continue
                    try:
                        return await self._exchange(conn, data)
                    except _Stale:
                        continue
                conn = await self._connect()
                try:
                    return await self._exchange(conn, data)
                except _Stale:
                    raise UpstreamError("connection closed before the response") from None
        except TimeoutError:
            raise UpstreamError(f"no response within {timeout:g}s") from None

    async def _exchange(self, conn: _Connection, data: bytes) -> UpstreamResponse:
        try:
            response = await conn.send(data)
        except BaseException:
            conn.close()  # cancelled or failed mid-exchange: the connection's state is unknown
            raise
        if conn.keep_alive and not conn.closed and not self._closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc or type(exc).__name__}") from None
        return conn

    def _encode(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        lines = [f"{method} {target} HTTP/1.1".encode(), b"host: " + self._host_header, b"content-length: " + str(len(body)).encode()]
        lines.extend(name + b": " + value for name, value in headers if name not in HOP_BY_HOP)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
