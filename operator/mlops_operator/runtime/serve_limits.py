"""Admission control shared by `mlops-serve` and `mlops-route`: caps, two lanes, rejections by reason.

One heavy client must not cost everyone else. So:
- a request is refused at once (429 with Retry-After) when the server already holds `max_in_flight`
  requests, or, for a *large* request (body over `large_bytes`), when `max_large_in_flight` large ones are
  in flight. Nothing waits in an unbounded queue: what is admitted is bounded, the rest is told to retry.
- decode and predict run off the event loop, in one of two worker lanes (`Lanes`): small requests have
  their own threads, so a 1-row request never queues behind a 15k-row batch; the event loop stays free for
  health probes and metrics, which never pass through admission at all.
- large requests take turns (`Admission.large_turn`): one at a time has its body read and its work done,
  and while small requests are being served, the large lane rests after each turn so that it holds at
  most `large_share` of the wall clock. Bytes a waiting client has sent sit in its socket (the server
  stops reading), so a client looping on huge bodies cannot take the CPU from everyone else; with no
  small traffic the large lane runs flat out.
- a request with more than `max_rows` rows is refused with 413 before its matrix is built.

Every refusal has a reason (`REASONS`), counted by the caller's metrics. Pure bookkeeping here; the only
I/O is the thread pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T")

SMALL, LARGE = "small", "large"
# Why a request was refused: the `reason` label of mlops_rejected_requests_total / mlops_router_rejected_total.
BODY_TOO_LARGE = "body_too_large"
TOO_MANY_ROWS = "too_many_rows"
OVERLOADED = "overloaded"            # max_in_flight reached
LARGE_OVERLOADED = "large_overloaded"  # max_large_in_flight reached (small requests still admitted)
MALFORMED = "malformed"              # not JSON, or not the protocol's shape
NESTING = "nesting"                  # nested deeper than the protocol allows
HUGE_NUMBER = "huge_number"          # a feature value beyond max_abs_value (or infinite)
EMPTY = "empty"                      # no rows, or an empty record
INVALID = "invalid"                  # any other client mistake (wrong feature count, types, ...)
# Entity requests (runtime/serve_entities.py):
UNKNOWN_ENTITY = "unknown_entity"    # an entity the online store does not hold (404)
STALE_FEATURES = "stale_features"    # an entity whose online values are older than the ttl (422)
STORE_UNAVAILABLE = "online_store_unavailable"  # the online store did not answer (503)
NOT_PUBLISHED = "online_not_published"  # no online values of the model's FeatureSet (yet) (503)
REASONS = (BODY_TOO_LARGE, TOO_MANY_ROWS, OVERLOADED, LARGE_OVERLOADED, MALFORMED, NESTING, HUGE_NUMBER, EMPTY,
           INVALID, UNKNOWN_ENTITY, STALE_FEATURES, STORE_UNAVAILABLE, NOT_PUBLISHED)


@dataclass(frozen=True)
class Limits:
    """The caps of one server or router (`spec.serving.limits`, environment `MLOPS_LIMIT_*`)."""

    max_rows: int = 10_000
    max_in_flight: int = 64
    max_large_in_flight: int = 4
    large_bytes: int = 64 * 1024
    max_abs_value: float = 1e15
    retry_after_seconds: int = 1
    large_share: float = 0.25

    def __post_init__(self) -> None:
        if min(self.max_rows, self.max_in_flight, self.max_large_in_flight, self.large_bytes,
               self.retry_after_seconds) < 1 or not self.max_abs_value > 0 or not 0 < self.large_share <= 1:
            raise ValueError(f"every limit must be positive (large_share in (0, 1]): {self}")


class LimitSettings(BaseSettings):
    """`MLOPS_LIMIT_*`: what the operator sets from `spec.serving.limits` (builders/serving.py)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_LIMIT_", extra="ignore")

    max_rows: int = Field(Limits.max_rows, ge=1)
    max_in_flight: int = Field(Limits.max_in_flight, ge=1)
    max_large_in_flight: int = Field(Limits.max_large_in_flight, ge=1)
    large_bytes: int = Field(Limits.large_bytes, ge=1)
    max_abs_value: float = Field(Limits.max_abs_value, gt=0, allow_inf_nan=False)
    retry_after_seconds: int = Field(Limits.retry_after_seconds, ge=1)
    large_share: float = Field(Limits.large_share, gt=0, le=1)

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class Rejected(Exception):
    """A request refused before any model work: HTTP status, reason label, message for the client."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.reason, self.retry_after = status, reason, retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())] if self.retry_after is not None else []


@dataclass
class Slot:
    """An admitted request (`Admission.admitted`): its body and lane; the slot is freed on leaving unless taken."""

    body: bytes
    lane: str
    held: bool = True

    def take(self) -> str:
        """From now on the caller frees the slot (`Admission.leave(lane)`), e.g. when a worker's work ends."""
        self.held = False
        return self.lane


class Admission:
    """In-flight counters per lane. `enter` admits or raises Rejected(429); `leave` must follow every admit."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.in_flight = {SMALL: 0, LARGE: 0}
        self.small_admitted = 0  # ever: tells a large turn whether small requests came while it ran
        self._turns = asyncio.Lock()  # FIFO: large requests are served in arrival order
        self._clock = clock

    def lane_of(self, size: int) -> str:
        """A body over `large_bytes` is large; anything else (1-row and 100-row requests) is small."""
        return LARGE if size > self.limits.large_bytes else SMALL

    def enter(self, size: int) -> str:
        """Admit a request of `size` body bytes into its lane, or refuse it (429, with Retry-After)."""
        lane = self.lane_of(size)
        total = self.in_flight[SMALL] + self.in_flight[LARGE]
        if total >= self.limits.max_in_flight:
            raise Rejected(429, OVERLOADED, f"too many requests in flight (limit {self.limits.max_in_flight}); "
                                            "retry later", self.limits.retry_after_seconds)
        if lane == LARGE and self.in_flight[LARGE] >= self.limits.max_large_in_flight:
            raise Rejected(429, LARGE_OVERLOADED,
                           f"too many large requests (over {self.limits.large_bytes} bytes) in flight (limit "
                           f"{self.limits.max_large_in_flight}); retry later or send smaller batches",
                           self.limits.retry_after_seconds)
        self.in_flight[lane] += 1
        if lane == SMALL:
            self.small_admitted += 1
        return lane

    @contextlib.asynccontextmanager
    async def admitted(self, content_length: bytes | None, max_body: int, read: Callable[[], Awaitable[bytes]],
                       turns: bool = False) -> AsyncIterator[Slot]:
        """Admit one request and read its body: on the size it announced, refused (Rejected: 429) before a
        byte of the body is read; without a usable announcement (none, or over `max_body`: `read` refuses
        that), on the size read. With `turns`, a large request announced as such is read and served on its
        lane's turn (`large_turn`). The slot is freed on exit unless the caller took it (`Slot.take`)."""
        size = declared_size(content_length)
        lane = self.enter(size) if size is not None and size <= max_body else None
        slot = None
        try:
            async with self.large_turn(lane if turns else None):
                body = await read()
                lane = lane or self.enter(len(body))
                slot = Slot(body, lane)
                yield slot
        finally:
            if lane is not None and (slot is None or slot.held):
                self.leave(lane)

    @contextlib.asynccontextmanager
    async def large_turn(self, lane: str | None) -> AsyncIterator[None]:
        """For a large request: wait for the large lane's turn, hold it while the body is read and the work
        done, then rest `rest_after` before the next large request if small requests arrived meanwhile.
        Anything else passes straight through."""
        if lane != LARGE:
            yield
            return
        async with self._turns:
            started, small_before = self._clock(), self.small_admitted
            try:
                yield
            finally:
                busy = self._clock() - started
                rest = rest_after(busy, self.limits.large_share, self.small_admitted > small_before or
                                  self.in_flight[SMALL] > 0)
                if rest > 0:
                    await asyncio.sleep(rest)

    def leave(self, lane: str) -> None:
        self.in_flight[lane] -= 1


def rest_after(busy: float, share: float, contended: bool) -> float:
    """Seconds the large lane rests after a turn of `busy` seconds so it holds at most `share` of the time,
    only while small requests want it (`contended`); capped at 1 s so one slow turn cannot stall the lane.

    >>> rest_after(0.01, 0.25, True), rest_after(0.01, 0.25, False), rest_after(10, 0.5, True)
    (0.03, 0.0, 1.0)
    """
    if not contended or share >= 1:
        return 0.0
    return min(1.0, round(busy * (1 - share) / share, 9))


def check_rows(rows: int, limits: Limits) -> None:
    """413 for a request with more rows than the cap (before its feature matrix is built)."""
    if rows > limits.max_rows:
        raise Rejected(413, TOO_MANY_ROWS, f"request has {rows} rows; the limit is {limits.max_rows} rows per request "
                                           "(split the batch)")


def declared_size(content_length: bytes | None) -> int | None:
    """The body size a client announced, if it announced a valid one."""
    if content_length is not None and content_length.isdigit():
        return int(content_length)
    return None


class Lanes:
    """Two bounded thread pools: small requests never wait behind large ones. Admission bounds their queues."""

    def __init__(self, small_workers: int | None = None, large_workers: int = 1):
        small_workers = small_workers or min(4, (os.cpu_count() or 1))
        self._pools = {SMALL: ThreadPoolExecutor(small_workers, thread_name_prefix="lane-small"),
                       LARGE: ThreadPoolExecutor(large_workers, thread_name_prefix="lane-large")}

    async def run(self, lane: str, done: Callable[[], None], fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a thread of `lane`; `done()` runs on the event loop when the thread's work has
        really ended (not when a disconnected client cancels the wait), so in-flight counts stay true."""
        loop = asyncio.get_running_loop()
        work = self._pools[lane].submit(fn, *args)
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(done))
        return await asyncio.wrap_future(work, loop=loop)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
