"""Inference logging: a sampled share of requests and answers, written to S3 as Parquet in batches.

`spec.logging` of a ModelDeployment reaches the model server as `MLOPS_LOG_*` (builders/serving.py).
Guarantees (docs/rollouts.md, "Inference logging"):

- **Never in the way.** The request path calls `offer()` after its answer is sent: one hash of the request
  id and one `deque.append`. A background task takes batches off the buffer and writes them from a
  thread. Nothing here awaits S3 for a request, raises into it, or holds a lock it takes.
- **Bounded.** At most `max_buffer_rows` records, holding at most `max_buffer_bytes` of request bodies,
  wait in memory (plus the one batch being written); a record offered to a full buffer is dropped and
  counted. A batch whose write fails is counted as
  `failed` and discarded (no retry queue to grow while S3 is down).
- **Same sample everywhere.** Whether a request is logged depends only on a hash of its id and the rate,
  so the primary and the shadow (which gets the primary's id from the router) log the same mirrored
  requests, and their records join by `request_id`.
- **Role is what the answer was for**, not the pod's launch role: `shadow` for a mirrored copy (the builtin
  router marks it, `x-mlops-mirror`), else `primary` (the answer reached a client). A promoted shadow's
  pods keep running unchanged, so their launch role would mislabel the primary traffic they then serve.

One Parquet row per logged request: `request_id`, `timestamp` (UTC), `model`, `version`, `role`,
`protocol` (v1 / v2), `inputs` (the feature rows the model saw, list<list<double>>, NaN = missing) and
`outputs` (one prediction per row, typed as the model answers). Objects:
`s3://<bucket>/inference-logs/<namespace>/<modeldeployment>/<version>/<role>/<UTC time>-<uuid>.parquet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_operator.providers.storage import client_config, make_s3_client
from mlops_operator.runtime.serve_protocol import FeatureSchema, v1_matrix, v2_matrix
from mlops_operator.runtime.serve_v2 import Request
from mlops_operator.settings import S3Settings

log = logging.getLogger(__name__)

PREFIX = "inference-logs"
PRIMARY, SHADOW = "primary", "shadow"
WRITTEN, DROPPED, FAILED = "written", "dropped", "failed"
RESULTS = (WRITTEN, DROPPED, FAILED)
LABELS = ("model", "version", "role")
RECORDS = Counter("mlops_inference_log_records_total",
                  "Sampled inference records by fate: written to S3, dropped (buffer full), failed (write failed).",
                  (*LABELS, "result"))
BUFFERED = Gauge("mlops_inference_log_buffer_records", "Inference records waiting in memory to be written.", LABELS)
FINAL_FLUSH_SECONDS = 10.0
_SPACE = float(1 << 64)


def sampled(request_id: str, rate: float) -> bool:
    """Whether the request with this id is logged: a stable hash of the id below `rate` (0..1)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * _SPACE


class LogSettings(BaseSettings):
    """`MLOPS_LOG_*`: what the builder derives from `spec.logging`, and the log writer's own credentials
    (`MLOPS_LOG_AWS_ACCESS_KEY_ID` ..., from the read-write Secret); without them the server's S3 settings."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_LOG_", extra="ignore")

    sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    batch_rows: int = Field(1000, ge=1, le=100_000)
    flush_interval: float = Field(30.0, gt=0)
    max_buffer_rows: int = Field(10_000, ge=1, le=1_000_000)
    max_buffer_bytes: int = Field(16 << 20, ge=1 << 20)
    namespace: str = ""
    deployment: str = ""
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None

    @property
    def enabled(self) -> bool:
        return self.sample_rate > 0 and bool(self.namespace) and bool(self.deployment)

    def s3(self, fallback: S3Settings) -> S3Settings:
        """The writer's S3 settings: its own credentials when given, else the server's (never logged)."""
        if self.aws_access_key_id is None:
            return fallback
        return S3Settings.model_validate({
            "s3_endpoint_url": self.s3_endpoint_url if self.s3_endpoint_url is not None else fallback.s3_endpoint_url,
            "s3_bucket": self.s3_bucket or fallback.s3_bucket,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "AWS_REGION": fallback.aws_region,
        })


@dataclass(slots=True)
class Record:
    request_id: str
    timestamp: float          # seconds since the epoch, when the answer was sent
    payload: Any              # the decoded request: V1 dict or V2 Request
    predictions: np.ndarray
    role: str = PRIMARY       # primary: answered a client; shadow: a mirrored copy, answer discarded
    size: int = 0             # request body bytes: what the buffer's byte bound counts


def object_key(namespace: str, deployment: str, version: str, role: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    return f"{PREFIX}/{namespace}/{deployment}/{version or '_'}/{role}/{stamp}-{uuid.uuid4().hex}.parquet"


def to_parquet(records: list[Record], schema: FeatureSchema, model: str, version: str) -> bytes:
    """One batch as a Parquet file (one row per request). Pure: the flusher runs it in a thread.

    pyarrow is imported here, on the first batch: a server that logs nothing never loads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    inputs = []
    for record in records:
        payload = record.payload
        x = v2_matrix(payload, schema) if isinstance(payload, Request) else v1_matrix(payload, schema)
        inputs.append(np.asarray(x, dtype=np.float64).tolist())
    n = len(records)
    table = pa.table({
        "request_id": pa.array([r.request_id for r in records], pa.string()),
        "timestamp": pa.array([int(r.timestamp * 1_000_000) for r in records], pa.timestamp("us", tz="UTC")),
        "model": pa.array([model] * n, pa.string()),
        "version": pa.array([version] * n, pa.string()),
        "role": pa.array([r.role for r in records], pa.string()),
        "protocol": pa.array(["v2" if isinstance(r.payload, Request) else "v1" for r in records], pa.string()),
        "inputs": pa.array(inputs, pa.list_(pa.list_(pa.float64()))),
        "outputs": pa.array([np.asarray(r.predictions).ravel().tolist() for r in records]),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class InferenceLog:
    """The bounded buffer, its flusher and its counters, for one served (model, version); `role` (the pod's
    launch role) labels the counters only."""

    def __init__(self, write: Callable[[str, bytes], None], schema: Callable[[], FeatureSchema | None], *,
                 model: str, version: str, role: str, namespace: str, deployment: str, sample_rate: float,
                 batch_rows: int = 1000, flush_interval: float = 30.0, max_buffer_rows: int = 10_000,
                 max_buffer_bytes: int = 16 << 20):
        self._write, self._schema = write, schema
        self.model, self.version, self.role = model, version, role
        self.namespace, self.deployment = namespace, deployment
        self.sample_rate, self.batch_rows = sample_rate, batch_rows
        self.flush_interval, self.max_buffer_rows = flush_interval, max_buffer_rows
        self.max_buffer_bytes = max_buffer_bytes
        self._buffer: deque[Record] = deque()
        self._bytes = 0
        self._full = asyncio.Event()
        labels = (model, version, role)
        self._counts = {result: RECORDS.labels(*labels, result) for result in RESULTS}  # every result from 0
        self._buffered = BUFFERED.labels(*labels)

    def __len__(self) -> int:
        return len(self._buffer)

    # ---------------------------------------------------------------------------- request path
    def offer(self, request_id: str, payload: Any, predictions: np.ndarray, role: str = PRIMARY, size: int = 0) -> bool:
        """Buffer the record if its id is sampled and there is room; never blocks, never raises for data."""
        if not sampled(request_id, self.sample_rate):
            return False
        if len(self._buffer) >= self.max_buffer_rows or (self._buffer and self._bytes + size > self.max_buffer_bytes):
            self._counts[DROPPED].inc()
            return False
        self._buffer.append(Record(request_id, time.time(), payload, predictions, role, size))
        self._bytes += size
        if len(self._buffer) >= self.batch_rows:
            self._full.set()
        return True

    # ---------------------------------------------------------------------------- background
    async def run(self) -> None:
        """Flush every `flush_interval`, or as soon as a batch is full; a last flush at shutdown."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
                self._full.clear()
                await self.flush()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), FINAL_FLUSH_SECONDS)
            raise

    async def flush(self) -> int:
        """Write everything buffered now, `batch_rows` at a time; returns the records written."""
        written = 0
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_rows, len(self._buffer)))]
            self._bytes -= sum(r.size for r in batch)
            self._buffered.set(len(self._buffer))
            written += await asyncio.to_thread(self._write_batch, batch)
        self._buffered.set(len(self._buffer))
        return written

    def _write_batch(self, batch: list[Record]) -> int:
        try:
            schema = self._schema()
            if schema is None:
                raise RuntimeError("no model loaded")
            for role in sorted({r.role for r in batch}):  # one object per role: the role is in the key
                group = [r for r in batch if r.role == role]
                data = to_parquet(group, schema, self.model, self.version)
                self._write(object_key(self.namespace, self.deployment, self.version, role), data)
        except Exception as exc:  # S3 down, denied, a bug: counted, never raised into serving
            self._counts[FAILED].inc(len(batch))
            log.warning("inference log: %d records not written: %s: %s", len(batch), type(exc).__name__, exc)
            return 0
        self._counts[WRITTEN].inc(len(batch))
        return len(batch)


def s3_writer(settings: S3Settings) -> Callable[[str, bytes], None]:
    """`write(key, data)` into the settings' bucket, with short timeouts and one retry (a flush fails fast)."""
    client = make_s3_client(settings, client_config(connect_timeout=2.0, read_timeout=10.0, max_attempts=2))
    bucket = settings.s3_bucket

    def write(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/vnd.apache.parquet")

    return write
