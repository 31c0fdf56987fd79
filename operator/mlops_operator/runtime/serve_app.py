"""The model server's HTTP layer: a plain ASGI callable speaking kserve's V1 and V2 REST protocols.

Routes are fixed strings computed once from the model name, so dispatch is a dict lookup. Errors follow
kserve's mapping and shape (`{"error": "..."}`): InvalidInput 400, unknown model 404, not ready 503,
inference failure 500, plus 413 for an oversized body. A client mistake never becomes a 5xx, and no
exception escapes to uvicorn (which would close the connection without a body).

Every prediction answer carries an id (V2 `id`, V1 `id`), and the server remembers what it predicted under
it for a while (bounded, `serve_feedback.PredictionStore`); `POST /v1/models/<m>:feedback` and
`POST /v2/models/<m>/feedback` take the true labels later and score them (docs/feedback.md). Feedback is
counted in its own metrics, never in `mlops_requests_total` (which is prediction traffic: error rate,
latency).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mlops_operator.runtime.serve_asgi import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    header,
    lifespan,
    read_body,
    send_bytes,
    send_error,
    send_json,
)
from mlops_operator.runtime.serve_entities import EntityFeatures, is_entity_request
from mlops_operator.runtime.serve_errors import InferenceError, InvalidInput, ModelNotReady
from mlops_operator.runtime.serve_feedback import (
    ERROR,
    INVALID,
    NOT_READY,
    OK,
    OVERLOADED,
    TOO_LARGE,
    FeedbackBook,
    FeedbackError,
    FeedbackWindow,
    PredictionStore,
    parse_feedback,
)
from mlops_operator.runtime.serve_json import dumps
from mlops_operator.runtime.serve_limits import (
    BODY_TOO_LARGE,
    Admission,
    Lanes,
    Limits,
    Rejected,
    check_rows,
)
from mlops_operator.runtime.serve_logging import PRIMARY, SHADOW, InferenceLog
from mlops_operator.runtime.serve_metrics import ServeMetrics
from mlops_operator.runtime.serve_model import SklearnModel
from mlops_operator.runtime.serve_protocol import (
    BINARY_HEADER,
    decode_v1,
    decode_v2,
    parse_json,
    reason_of,
    response_v2_body,
    v1_rows,
    v2_rows,
)

log = logging.getLogger(__name__)
Hook = Callable[[], Awaitable[None]]
T = TypeVar("T")
# The router puts the primary's answer id here on a shadow copy, so the shadow answers (and logs) under the
# same id; a request's own id (V2 `id`, V1 `"id"`) wins over it.
REQUEST_ID_HEADER = b"x-mlops-request-id"
MIRROR_HEADER = b"x-mlops-mirror"  # the router's mark on a shadow copy: logged with role "shadow"


async def _nothing() -> None:
    return None


def _server_version() -> str:
    try:
        return version("mlops-operator")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


class ServeApp:
    """ASGI app for one model. `on_startup`/`on_shutdown` run in the ASGI lifespan (loader, stats tasks)."""

    def __init__(
        self,
        model: SklearnModel,
        metrics: ServeMetrics,
        max_body_bytes: int = 1 << 20,
        on_startup: Hook = _nothing,
        on_shutdown: Hook = _nothing,
        feedback: FeedbackBook | None = None,
        inference_log: InferenceLog | None = None,
        limits: Limits | None = None,
        lanes: Lanes | None = None,
        entities: EntityFeatures | None = None,
    ):
        self.model = model
        self.entities = entities
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.feedback = feedback or FeedbackBook(PredictionStore(), FeedbackWindow())
        self.inference_log = inference_log
        self.admission = Admission(limits or Limits())
        self.lanes = lanes or Lanes()
        self._on_startup, self._on_shutdown = on_startup, on_shutdown
        name = model.name
        v2 = f"/v2/models/{name}"
        self._predict_routes: dict[str, bool] = {f"/v1/models/{name}:predict": False, f"{v2}/infer": True}
        if model.version:
            self._predict_routes[f"{v2}/versions/{model.version}/infer"] = True
        self._feedback_routes = {f"/v1/models/{name}:feedback", f"{v2}/feedback"}
        if model.version:
            self._feedback_routes.add(f"{v2}/versions/{model.version}/feedback")
        self._get_routes: dict[str, Callable[[Send], Awaitable[None]]] = {
            "/": self._alive,
            "/healthz": self._alive,
            "/metrics": self._metrics,
            "/v2": self._server_metadata,
            "/v2/health/live": self._live,
            "/v2/health/ready": self._server_ready,
            "/v2/models": self._models,
            "/v1/models": self._models,
            v2: self._model_metadata,
            f"{v2}/ready": self._model_ready,
            f"/v1/models/{name}": self._model_ready,
        }
        if model.version:
            self._get_routes[f"{v2}/versions/{model.version}"] = self._model_metadata
            self._get_routes[f"{v2}/versions/{model.version}/ready"] = self._model_ready
        self._server_meta = dumps({"name": "mlops-serve", "version": _server_version(), "extensions": []})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST":
                is_v2 = self._predict_routes.get(path)
                if is_v2 is not None:
                    return await self._predict(scope, receive, send, is_v2)
                if path in self._feedback_routes:
                    return await self._feedback(scope, receive, send)
            elif method == "GET":
                handler = self._get_routes.get(path)
                if handler is not None:
                    return await handler(send)
            return await self._no_route(path, method, send)
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._on_startup, self._shutdown)

    async def _shutdown(self) -> None:
        await self._on_shutdown()
        self.lanes.close()

    # ------------------------------------------------------------------------------ inference
    async def _predict(self, scope: Scope, receive: Receive, send: Send, is_v2: bool) -> None:
        """Admit (or 429), read the body, then decode + predict on a worker lane, never on the event loop."""
        started = time.perf_counter()
        extra: list[tuple[bytes, bytes]] = []
        logged = None
        reason = None
        try:
            body, (out, headers, answer_id, payload, predictions) = await self._in_lane(
                scope, receive, self._work, is_v2, header(scope, REQUEST_ID_HEADER), header(scope, BINARY_HEADER.encode()))
            mirror = header(scope, MIRROR_HEADER) is not None
            if self.model.fault.active:  # rollback tests only: a valid request gets the injected delay/failure
                await self.model.misbehave()
            self.feedback.remember(answer_id, predictions)
            extra = headers
            logged = (answer_id, payload, predictions, SHADOW if mirror else PRIMARY, len(body))
            status = 200
        except Rejected as exc:
            status, out, extra, reason = exc.status, dumps({"error": str(exc)}), exc.headers(), exc.reason
        except InvalidInput as exc:
            status, out, reason = 400, dumps({"error": str(exc)}), reason_of(exc)
        except BodyTooLarge as exc:
            status, out, reason = 413, dumps({"error": str(exc)}), BODY_TOO_LARGE
        except ModelNotReady as exc:
            status, out = 503, dumps({"error": str(exc)})
        except InferenceError as exc:
            status, out = 500, dumps({"error": str(exc)})
        except Exception as exc:  # a model bug, never the client's: 500 with kserve's generic shape
            log.exception("prediction failed")
            status, out = 500, dumps({"error": f"{type(exc).__name__} : {exc}"})
        await send_bytes(send, status, out, extra=extra)
        self.metrics.observe(status, time.perf_counter() - started)
        if reason is not None:
            self.metrics.rejected(reason)
        if logged is not None and self.inference_log is not None:  # after the answer: never delays it
            try:
                self.inference_log.offer(*logged)
            except Exception:  # logging must never cost a request
                log.exception("inference logging failed")

    async def _in_lane(self, scope: Scope, receive: Receive, work: Callable[..., T], *args: Any) -> tuple[bytes, T]:
        """Admit the request (or raise Rejected: 429), read its body (a large one on its lane's turn), then run
        `work(body, *args)` on a worker thread of its lane; the slot is freed when that work has ended."""
        async with self.admission.admitted(header(scope, b"content-length"), self.max_body_bytes,
                                           lambda: read_body(scope, receive, self.max_body_bytes), turns=True) as slot:
            lane = slot.take()  # from here the worker's completion frees the slot
            return slot.body, await self.lanes.run(lane, lambda: self.admission.leave(lane), work, slot.body, *args)

    def _work(self, body: bytes, is_v2: bool, given_id: bytes | None, binary: bytes | None) -> tuple[
            bytes, list[tuple[bytes, bytes]], str, Any, np.ndarray]:
        """On a worker thread: decode, cap the rows, predict, encode. Client mistakes raise InvalidInput/Rejected
        before the model sees anything."""
        limits = self.admission.limits
        entity_doc = self._entity_request(body) if binary is None else None
        payload = self._entity_payload(entity_doc, is_v2) if entity_doc is not None else None
        if is_v2:
            request = payload if payload is not None else decode_v2(
                body, self.model.name, {BINARY_HEADER: binary.decode()} if binary else None)
            check_rows(v2_rows(request), limits)
            if given_id and not request.id:
                request.id = given_id.decode("latin-1")
            response, predictions = self.model.infer_now(request, limits.max_abs_value)
            out, extra = response_v2_body(response)
            return out, [(k.encode(), v.encode()) for k, v in extra.items()], response.id, request, predictions
        doc = payload if payload is not None else decode_v1(body)
        check_rows(v1_rows(doc), limits)
        if given_id and not (isinstance(doc.get("id"), str) and doc["id"]):
            doc["id"] = given_id.decode("latin-1")
        answer, predictions = self.model.infer_now(doc, limits.max_abs_value)
        return dumps(answer), [], answer["id"], doc, predictions

    def _entity_payload(self, doc: dict, is_v2: bool) -> Any:
        """The V1 doc or V2 InferRequest of raw rows an entity request stands for (rows capped first)."""
        entities = doc["entities"]
        check_rows(len(entities) if isinstance(entities, list) else 0, self.admission.limits)
        if self.entities is None:
            raise InvalidInput("entity requests need an online store, and this server has none configured: "
                               "send instances (V1) or inputs (V2)")
        names = self.model.feature_names()
        return self.entities.v2(doc, names, self.model.name) if is_v2 else self.entities.v1(doc, names)

    @staticmethod
    def _entity_request(body: bytes) -> dict | None:
        """The parsed body when it is an entity request (``{"entities": [...]}``), else None."""
        if not is_entity_request(body):
            return None
        doc = parse_json(body)
        return doc if isinstance(doc, dict) and "entities" in doc and "instances" not in doc and "inputs" not in doc else None

    # ------------------------------------------------------------------------------ label feedback
    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Score true labels against a remembered (or given) prediction; every refusal names the problem."""
        scored = None
        extra: list[tuple[bytes, bytes]] = []
        try:
            try:  # parsed off the event loop, under the same admission as predictions
                _, doc = await self._in_lane(scope, receive, parse_json)
            except InvalidInput as exc:
                raise FeedbackError(400, INVALID, str(exc)) from None
            feedback = parse_feedback(doc)
            runtime = self.model.runtime
            if runtime is None or not self.model.ready:
                raise FeedbackError(503, NOT_READY, str(ModelNotReady(self.model.name, self.model.not_ready_reason)))
            if feedback.version is not None and feedback.version != self.model.version:
                raise FeedbackError(400, INVALID, f"this server serves version {self.model.version!r}, "
                                                  f"not {feedback.version!r}")
            scored = self.feedback.record(feedback, runtime.task, runtime.numeric_output)
            status, result, out = 200, OK, dumps(scored.answer(self.model.name, self.model.version))
        except BodyTooLarge as exc:
            status, result, out = 413, TOO_LARGE, dumps({"error": str(exc)})
        except Rejected as exc:
            status, result, out, extra = exc.status, OVERLOADED, dumps({"error": str(exc)}), exc.headers()
            self.metrics.rejected(exc.reason)
        except FeedbackError as exc:
            status, result, out = exc.status, exc.result, dumps({"error": str(exc)})
        except Exception as exc:  # a bug here must cost one request, never the server
            log.exception("feedback failed")
            status, result, out = 500, ERROR, dumps({"error": f"{type(exc).__name__} : {exc}"})
        await send_bytes(send, status, out, extra=extra)
        self.metrics.feedback(result, scored)

    # ------------------------------------------------------------------------------ health and metadata
    async def _alive(self, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def _live(self, send: Send) -> None:
        await send_json(send, 200, {"live": True})

    async def _server_ready(self, send: Send) -> None:
        if self.model.ready:
            await send_json(send, 200, {"ready": True})
        else:
            await send_error(send, 503, f"Server is not ready. {self.model.not_ready_reason}".strip())

    async def _model_ready(self, send: Send) -> None:
        if self.model.ready:
            await send_json(send, 200, {"name": self.model.name, "ready": True})
        else:
            await send_error(send, 503, str(ModelNotReady(self.model.name, self.model.not_ready_reason)))

    async def _models(self, send: Send) -> None:
        await send_json(send, 200, {"models": [self.model.name]})

    async def _server_metadata(self, send: Send) -> None:
        await send_bytes(send, 200, self._server_meta)

    async def _model_metadata(self, send: Send) -> None:
        if not self.model.ready:
            return await self._model_ready(send)
        await send_json(send, 200, self.model.metadata())

    async def _metrics(self, send: Send) -> None:
        await send_bytes(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode())

    async def _no_route(self, path: str, method: str, send: Send) -> None:
        if path in self._predict_routes or path in self._get_routes or path in self._feedback_routes:
            return await send_error(send, 405, f"method {method} not allowed on {path}")
        for prefix in ("/v1/models/", "/v2/models/"):
            if path.startswith(prefix):
                other = path[len(prefix):].split("/", 1)[0].split(":", 1)[0]
                if other != self.model.name:  # kserve's ModelNotFound wording
                    return await send_error(send, 404, f"Model with name {other} does not exist.")
        await send_error(send, 404, f"no route for {method} {path}")
