"""`mlops-serve`: the model server of a ModelDeployment variant (kserve V1 + V2 REST, Prometheus metrics).

Environment:
    MLOPS_MODEL              served model name, used in the paths (`/v1/models/<name>:predict`,
                             `/v2/models/<name>/infer`); the ModelDeployment's `spec.model`. Required.
    MLOPS_MODEL_VERSION      the ModelVersion name (metric label, V2 `model_version`). Default "".
    MLOPS_ROLE               stable | candidate | shadow | preview (metric label). Default stable.
    MLOPS_ARTIFACT_PREFIX    s3://<bucket>/models/<model>/<modelversion>/ holding manifest.json,
                             model.joblib and (optionally) reference.json. Required.
    MLOPS_ARTIFACT_SHA256    optional pin: the registry's status.artifact.sha256 (of manifest.json) or the
                             sha256 of model.joblib; load refuses a version that matches neither.
    MLOPS_COMPILED_MODEL     auto (default): run the version's model.onnx with onnxruntime when its training
                             recorded a matching compiled form; off: always scikit-learn.
    MLOPS_CPU_LIMIT          whole cores of the container's CPU limit: the compiled form's intra-op threads.
    MLOPS_HOST / MLOPS_PORT  listen address, default 0.0.0.0:8080.
    MLOPS_MAX_BODY_BYTES     larger request bodies get 413. Default 1 MiB.
    MLOPS_LIMIT_MAX_ROWS, MLOPS_LIMIT_MAX_IN_FLIGHT, MLOPS_LIMIT_MAX_LARGE_IN_FLIGHT, MLOPS_LIMIT_LARGE_BYTES,
    MLOPS_LIMIT_MAX_ABS_VALUE   spec.serving.limits (runtime/serve_limits.py): rows per request (413 beyond),
                             requests in flight (429 beyond), of them large ones (body over LARGE_BYTES), and
                             the largest feature magnitude accepted. Defaults 10000, 64, 4, 64 KiB, 1e15.
    MLOPS_LIMIT_LARGE_SHARE  share of the wall clock large requests may hold while small ones wait. Default 0.25.
    MLOPS_DRIFT_INTERVAL     seconds between drift / missing-ratio computations. Default 15.
    MLOPS_DRIFT_WINDOW       recent rows kept for them. Default 2048.
    MLOPS_DRIFT_MIN_ROWS     no drift value is published from fewer rows. Default 100.
    MLOPS_FEEDBACK_MAX_PREDICTIONS  predictions remembered for label feedback (by id). Default 10000.
    MLOPS_FEEDBACK_MAX_ROWS  rows those remembered predictions may hold together. Default 100000.
    MLOPS_FEEDBACK_TTL       seconds a prediction can receive its labels. Default 3600.
    MLOPS_FEEDBACK_WINDOW    labelled rows mlops_model_accuracy / mlops_model_mae are computed over. Default 1000.
    MLOPS_LOG_SAMPLE_RATE    inference logging (spec.logging, runtime/serve_logging.py): share of requests
                             written to S3 as Parquet, by a hash of the request id. Default 0 (off).
    MLOPS_LOG_BATCH_ROWS, MLOPS_LOG_FLUSH_INTERVAL (seconds), MLOPS_LOG_MAX_BUFFER_ROWS   batch size, flush
                             period, bounded buffer (full: records dropped and counted).
    MLOPS_LOG_MAX_BUFFER_BYTES  request-body bytes the buffer may hold too. Default 16 MiB.
    MLOPS_LOG_NAMESPACE, MLOPS_LOG_DEPLOYMENT   the object key prefix inference-logs/<namespace>/<deployment>/.
    MLOPS_LOG_AWS_ACCESS_KEY_ID, MLOPS_LOG_AWS_SECRET_ACCESS_KEY, MLOPS_LOG_S3_ENDPOINT_URL, MLOPS_LOG_S3_BUCKET
                             the log writer's own (read-write) credentials; absent: the S3 settings below.
    MLOPS_ONLINE_STORE_URL   the online feature store (redis://host:port/db; REDIS_PASSWORD beside it): with
                             it, a version trained on a FeatureSet also answers {"entities": [...]} requests
                             (runtime/serve_entities.py). Absent: entity requests get 400.
    MLOPS_NAMESPACE          the ModelDeployment's namespace: the online store's keys start with it.
    MLOPS_FAULT              TESTING ROLLBACKS ONLY: makes this server a "bad version"
                             (`error`, `error:0.2`, `slow:0.2`; see runtime/serve_fault.py).
    S3_ENDPOINT_URL, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION   (settings.py)

Probes: liveness `GET /v2/health/live` (or `/healthz`), readiness `GET /v2/health/ready`: 503 until the
artifact is loaded with a verified sha256, and forever if verification fails (fail closed; the reason is
in the 503 body and the log). Transient S3 errors are retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Callable
from typing import Literal

from prometheus_client import disable_created_metrics
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_operator.providers.storage import AccessDenied, ArtifactStore, IntegrityError
from mlops_operator.settings import s3_settings
from mlops_operator.runtime.serve_app import ServeApp
from mlops_operator.runtime.online_store import OnlineStore
from mlops_operator.runtime.serve_asgi import Background, freeze_heap, serve
from mlops_operator.runtime.serve_entities import EntityFeatures
from mlops_operator.runtime.serve_fault import parse_fault
from mlops_operator.runtime.serve_feedback import FeedbackBook, FeedbackWindow, PredictionStore
from mlops_operator.runtime.serve_limits import LimitSettings
from mlops_operator.runtime.serve_logging import InferenceLog, LogSettings, s3_writer
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import ArtifactSource, SklearnModel

log = logging.getLogger("mlops_operator.serve")
MAX_BACKOFF_SECONDS = 60.0


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", protected_namespaces=())

    model: str = Field(min_length=1)
    model_version: str = ""
    role: Literal["stable", "candidate", "shadow", "preview"] = "stable"
    artifact_prefix: str = Field(min_length=1)
    artifact_sha256: str | None = Field(None, pattern="^[0-9a-fA-F]{64}$")
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    drift_interval: float = Field(15.0, gt=0)
    drift_window: int = Field(2048, ge=1)
    drift_min_rows: int = Field(100, ge=1)
    feedback_max_predictions: int = Field(10_000, ge=1, le=10_000_000)
    feedback_max_rows: int = Field(100_000, ge=1, le=100_000_000)
    feedback_ttl: float = Field(3600.0, gt=0)
    feedback_window: int = Field(1000, ge=1, le=1_000_000)
    compiled_model: Literal["auto", "off"] = "auto"
    cpu_limit: int = Field(1, ge=1, le=1024)
    fault: str = ""
    log_level: str = "INFO"
    online_store_url: str = ""
    namespace: str = ""


async def load_until_ready(model: SklearnModel, metrics: ServeMetrics) -> None:
    """Retry `model.load()` off the event loop until it succeeds; every failure leaves the pod not Ready."""
    delay = 1.0
    while not model.ready:
        try:
            await asyncio.to_thread(model.load)
        except IntegrityError as exc:
            log.error("artifact verification FAILED, refusing to serve (not Ready): %s", exc)
        except AccessDenied as exc:
            log.error("S3 access denied, will retry in %.0fs: %s", delay, exc)
        except Exception as exc:
            log.warning("model load failed, will retry in %.0fs: %s: %s", delay, type(exc).__name__, exc)
        else:
            metrics.feedback_task(model.runtime.task)
            freeze_heap()  # the model lives as long as the process: keep it out of every collection
            metrics.ready.set(1)
            log.info("model %s version %s loaded and verified", model.name, model.version)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)


async def publish_window_stats(model: SklearnModel, metrics: ServeMetrics, interval: float, min_rows: int) -> None:
    """Every `interval` seconds: missing ratio and drift of the recent window, as gauges.

    The snapshot is copied on the event loop (the request path writes the window there); the statistics
    run in a thread, so a wide model's drift tests never stall predictions.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            snapshot = model.window_snapshot()
            if snapshot is not None:
                metrics.set_window_stats(await asyncio.to_thread(snapshot.stats, min_rows))
        except Exception:  # statistics must never take the server down
            log.exception("window statistics failed")


def inference_log(settings: ServeSettings, model: SklearnModel, logging_settings: LogSettings | None = None,
                  write: Callable[[str, bytes], None] | None = None) -> InferenceLog | None:
    """The inference logger of `spec.logging` (MLOPS_LOG_*), or None when logging is off."""
    cfg = logging_settings or LogSettings()
    if not cfg.enabled:
        return None
    if write is None:
        write = s3_writer(cfg.s3(s3_settings()))
    log.info("inference logging on: %.4g of requests to inference-logs/%s/%s/ (batches of %d, every %gs)",
             cfg.sample_rate, cfg.namespace, cfg.deployment, cfg.batch_rows, cfg.flush_interval)
    return InferenceLog(write, lambda: model.runtime.schema if model.runtime is not None else None,
                        model=settings.model, version=settings.model_version, role=settings.role,
                        namespace=cfg.namespace, deployment=cfg.deployment, sample_rate=cfg.sample_rate,
                        batch_rows=cfg.batch_rows, flush_interval=cfg.flush_interval,
                        max_buffer_rows=cfg.max_buffer_rows, max_buffer_bytes=cfg.max_buffer_bytes)


def build_app(settings: ServeSettings, store: ArtifactStore | None = None,
              logging_settings: LogSettings | None = None) -> ServeApp:
    """Wire settings into the model, metrics and app; background tasks start with the ASGI lifespan."""
    # Models fitted on DataFrames warn on every ndarray predict; the server checks the schema itself.
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
    fault = parse_fault(settings.fault)
    if fault.active:
        log.warning("MLOPS_FAULT=%r is set: this server is DELIBERATELY BROKEN (rollback testing only)", fault.spec)
    online = OnlineStore.from_env({"MLOPS_ONLINE_STORE_URL": settings.online_store_url,
                                   "REDIS_PASSWORD": os.environ.get("REDIS_PASSWORD", "")})
    source = ArtifactSource(store or ArtifactStore.from_settings(), settings.artifact_prefix, settings.artifact_sha256,
                            settings.compiled_model, lineage=online is not None)
    model = SklearnModel(settings.model, settings.model_version, source=source, fault=fault,
                         window_rows=settings.drift_window, threads=settings.cpu_limit)
    metrics = ServeMetrics(settings.model, settings.model_version, settings.role)
    entities = None
    if online is not None:
        log.info("entity requests on: online store %s, keys %s/<featureset>/<entity>", online.url,
                 settings.namespace or "default")
        entities = EntityFeatures(online, settings.namespace or "default", lambda: model.feature_set,
                                  (settings.model, settings.model_version, settings.role))
    inference = inference_log(settings, model, logging_settings)
    background = Background(
        lambda: load_until_ready(model, metrics),
        lambda: publish_window_stats(model, metrics, settings.drift_interval, settings.drift_min_rows),
        *([inference.run] if inference is not None else []),
    )
    feedback = FeedbackBook(
        PredictionStore(settings.feedback_max_predictions, settings.feedback_max_rows, settings.feedback_ttl),
        FeedbackWindow(settings.feedback_window),
    )
    return ServeApp(model, metrics, settings.max_body_bytes, background.start, background.stop, feedback, inference,
                    LimitSettings().limits(), entities=entities)


def main() -> None:
    settings = ServeSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_created_metrics()  # halves /metrics; the _created series are not used by any rule
    serve(build_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
