"""Shadow mirroring: fire-and-forget copies of primary requests, and agreement with the primary's answers.

The primary path only calls `submit()`, after its response is sent: a `put_nowait` on a bounded queue.
A full queue drops the copy (counted) instead of waiting, and a fixed number of workers send the copies,
so a slow or failing shadow can use at most `concurrency` connections and `max_queue` buffered requests —
it can never delay or fail a primary response.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from mlops_operator.runtime.route_metrics import SHADOW_AGREEMENT, SHADOW_PREDICTIONS, SHADOW_REQUESTS
from mlops_operator.runtime.route_upstream import UpstreamError, UpstreamPool
from mlops_operator.runtime.serve_asgi import Background
from mlops_operator.runtime.serve_json import loads

log = logging.getLogger(__name__)


def predictions_of(body: bytes) -> list[Any] | None:
    """The predictions in a V1 (`predictions`) or V2 (`outputs[*].data`) response body; None if neither."""
    try:
        doc = loads(body)
    except Exception:
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("predictions"), list):
        return doc["predictions"]
    outputs = doc.get("outputs")
    if isinstance(outputs, list) and outputs and all(isinstance(o, dict) and isinstance(o.get("data"), list) for o in outputs):
        return [value for output in outputs for value in output["data"]]
    return None


REQUEST_ID_HEADER = b"x-mlops-request-id"  # read by the model server (serve_app.REQUEST_ID_HEADER)
MIRROR_HEADER = b"x-mlops-mirror"          # marks a shadow copy (serve_app.MIRROR_HEADER: logged as "shadow")


def answer_id(body: bytes) -> str | None:
    """The `id` of a V1 or V2 JSON answer (every prediction answer carries one); None if absent or not JSON."""
    try:
        doc = loads(body)
    except Exception:
        return None
    rid = doc.get("id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) and rid else None


def shadow_headers(headers: list[tuple[bytes, bytes]], primary_body: bytes | None) -> list[tuple[bytes, bytes]]:
    """The shadow copy's headers: marked as a mirror, and carrying the primary's answer id, so a request
    without an id of its own gets the same id on the shadow and their inference-log records join by id."""
    out = [(k, v) for k, v in headers if k not in (REQUEST_ID_HEADER, MIRROR_HEADER)] + [(MIRROR_HEADER, b"1")]
    rid = answer_id(primary_body) if primary_body is not None else None
    if rid is not None:
        try:
            out.append((REQUEST_ID_HEADER, rid.encode("latin-1")))
        except UnicodeEncodeError:
            pass
    return out


def same_prediction(a: Any, b: Any, tolerance: float) -> bool:
    """Labels compare exactly; numbers within `tolerance` relative to their magnitude; lists elementwise."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_prediction(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return a == b


def agreement(primary: list[Any], shadow: list[Any], tolerance: float = 1e-9) -> tuple[int, int]:
    """(agreeing, compared) predictions; answers of different lengths count every row as a disagreement."""
    if len(primary) != len(shadow):
        return 0, max(len(primary), len(shadow))
    agreed = sum(1 for a, b in zip(primary, shadow) if same_prediction(a, b, tolerance))
    return agreed, len(primary)


@dataclass(frozen=True)
class ShadowJob:
    pool: UpstreamPool
    model: str
    version: str
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    primary_status: int
    primary_body: bytes
    tolerance: float | None = None  # the config's shadow.tolerance; None: the mirror's default


class AgreementCounter:
    """Cumulative agree/compare counts per (model, shadow version), published as counters and a ratio."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], list[int]] = {}

    def record(self, model: str, version: str, agreed: int, compared: int) -> float:
        counts = self._counts.setdefault((model, version), [0, 0])
        counts[0] += agreed
        counts[1] += compared
        SHADOW_PREDICTIONS.labels(model, version, "agree").inc(agreed)
        SHADOW_PREDICTIONS.labels(model, version, "disagree").inc(compared - agreed)
        ratio = counts[0] / counts[1] if counts[1] else float("nan")
        SHADOW_AGREEMENT.labels(model, version).set(ratio)
        return ratio


class ShadowMirror:
    """Bounded queue + fixed workers that send shadow copies and compare predictions."""

    def __init__(self, observe: Any, max_queue: int = 256, concurrency: int = 4, timeout: float = 5.0,
                 tolerance: float = 1e-9):
        self._observe = observe  # RouterMetrics.observe, for variant="shadow" traffic metrics
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=max_queue)
        self._timeout = timeout
        self._tolerance = tolerance
        self._workers = Background(*[self._work] * concurrency)
        self.agreement = AgreementCounter()

    def submit(self, job: ShadowJob) -> bool:
        """Never blocks: False (and a `dropped` count) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            SHADOW_REQUESTS.labels(job.model, job.version, "dropped").inc()
            return False
        return True

    async def start(self) -> None:
        await self._workers.start()

    async def stop(self) -> None:
        await self._workers.stop()

    async def join(self) -> None:
        """Wait until every queued copy has been handled (tests and graceful shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            started = loop.time()
            try:
                headers = shadow_headers(job.headers, job.primary_body if 200 <= job.primary_status < 300 else None)
                response = await job.pool.request(job.method, job.target, headers, job.body, self._timeout)
            except UpstreamError as exc:
                log.debug("shadow request failed: %s", exc)
                self._observe("shadow", 502, loop.time() - started)
                SHADOW_REQUESTS.labels(job.model, job.version, "error").inc()
            except Exception:  # a bug here must not kill the worker
                log.exception("shadow worker failed")
                SHADOW_REQUESTS.labels(job.model, job.version, "error").inc()
            else:
                self._observe("shadow", response.status, loop.time() - started)
                ok = 200 <= response.status < 300
                SHADOW_REQUESTS.labels(job.model, job.version, "ok" if ok else "error").inc()
                if ok and 200 <= job.primary_status < 300:
                    self._compare(job, response.body)
            finally:
                self._queue.task_done()

    def _compare(self, job: ShadowJob, shadow_body: bytes) -> None:
        primary, shadow = predictions_of(job.primary_body), predictions_of(shadow_body)
        if primary is None or shadow is None:
            return  # not a prediction (metadata, health): nothing to agree on
        tolerance = self._tolerance if job.tolerance is None else job.tolerance
        agreed, compared = agreement(primary, shadow, tolerance)
        self.agreement.record(job.model, job.version, agreed, compared)
