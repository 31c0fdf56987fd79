"""The router's HTTP layer: proxy by weight, mirror to the shadow, and the admin endpoints.

Local paths (never proxied): `/metrics`, `/-/healthz`, `/-/ready`, `GET|PUT /-/config`. Everything else
goes to one variant picked by the smooth weighted split and comes back with `x-mlops-variant` and
`x-mlops-version` headers. An upstream that cannot be reached costs that one request a 502; upstream HTTP
errors are passed through unchanged (they are the variant's own answer and count against it).

Label feedback (`POST .../<m>:feedback`, `.../feedback`) is not split by weight: it goes to the variant(s)
that may have made the prediction (runtime/route_feedback.py: by id to every primary variant at once, the
first 2xx wins) and is counted in `mlops_router_feedback_*`, never in `mlops_router_requests_total`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mlops_operator.runtime import route_feedback
from mlops_operator.runtime.route_config import FULL, ConfigError, RouterConfig, Upstream, Verdict, decide, parse_config
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowJob, ShadowMirror
from mlops_operator.runtime.route_split import PercentSampler, SmoothWeightedPicker
from mlops_operator.runtime.route_upstream import HOP_BY_HOP, UpstreamError, UpstreamPool
from mlops_operator.runtime.serve_limits import BODY_TOO_LARGE, Admission, Limits, Rejected
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
from mlops_operator.runtime.serve_json import dumps, parse_json

log = logging.getLogger(__name__)
Hook = Callable[[], Awaitable[None]]
ADMIN_BODY_LIMIT = 64 * 1024


@dataclass
class Route:
    """Everything a request needs from one configuration, swapped as a whole when the config changes."""

    config: RouterConfig
    picker: SmoothWeightedPicker
    sampler: PercentSampler
    pools: dict[str, UpstreamPool] = field(default_factory=dict)


class RouterState:
    """The configuration in effect and the connection pools of its upstreams (reused across configs)."""

    def __init__(self, metrics: RouterMetrics, retired: route_feedback.RetiredVersions | None = None):
        self.route: Route | None = None
        self._metrics = metrics
        self._pools: dict[tuple[str, int], UpstreamPool] = {}
        self.retired = retired if retired is not None else route_feedback.RetiredVersions()

    def offer(self, doc: object, source: str) -> tuple[Verdict, str]:
        """Validate and maybe apply a config document. Raises ConfigError if invalid; else (verdict, why)."""
        try:
            config = parse_config(doc)
        except ConfigError:
            self._metrics.config_refused(source)
            raise
        verdict, why = decide(self.route.config if self.route else None, config)
        if verdict is Verdict.APPLY:
            self._apply(config)
            log.info("router config applied from %s: %s (weights %s, shadow %s bp)", source, why, config.weights,
                     config.shadow_percent if config.shadow else 0)
        elif verdict is not Verdict.UNCHANGED:
            self._metrics.config_refused(source)
            log.warning("router config from %s not applied: %s", source, why)
        return verdict, why

    def _apply(self, config: RouterConfig) -> None:
        self.retired.note(self.route.config if self.route else None, config)
        pools = {u.name: self._pool(u.host, u.port) for u in config.upstreams}
        in_use = {(u.host, u.port) for u in [*config.upstreams, *self.retired.upstreams()]}
        for key in [k for k in self._pools if k not in in_use]:
            self._pools.pop(key).close()
        self.route = Route(config, SmoothWeightedPicker(config.weights), PercentSampler(config.shadow_percent if config.shadow else 0), pools)
        weights = {name: w * 100 / FULL for name, w in config.weights.items()}
        weights["shadow"] = config.shadow_percent / 100 if config.shadow else 0.0
        self._metrics.config_applied(config.generation, weights)

    def retired_pool(self, upstream: Upstream) -> UpstreamPool:
        """The connection pool of a retired version (kept until it stops being retired)."""
        return self._pool(upstream.host, upstream.port)

    def _pool(self, host: str, port: int) -> UpstreamPool:
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = UpstreamPool(host, port)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


class RouterApp:
    def __init__(
        self,
        state: RouterState,
        mirror: ShadowMirror,
        metrics: RouterMetrics,
        token: str | None = None,
        model: str = "",
        max_body_bytes: int = 1 << 20,
        timeout: float = 30.0,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        limits: Limits | None = None,
    ):
        self.state, self.mirror, self.metrics = state, mirror, metrics
        # The router decodes nothing, so it needs no worker lanes: only the in-flight caps (rows are the
        # servers' to count).
        self.admission = Admission(limits or Limits())
        self._token = f"Bearer {token}".encode() if token else None
        self.model = model  # shadow metrics label when the config names no model
        self.max_body_bytes, self.timeout = max_body_bytes, timeout
        self._on_startup, self._on_shutdown = on_startup, on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/-/") or path == "/metrics":
                return await self._local(scope, receive, send, path)
            return await self._proxy(scope, receive, send)
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._startup, self._shutdown)

    async def _startup(self) -> None:
        await self.mirror.start()
        if self._on_startup:
            await self._on_startup()

    async def _shutdown(self) -> None:
        if self._on_shutdown:
            await self._on_shutdown()
        await self.mirror.stop()
        self.state.close()

    # ------------------------------------------------------------------------------ proxy
    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = self.state.route
        if route is None:
            return await send_error(send, 503, "the router has no configuration yet")
        try:
            async with self.admission.admitted(header(scope, b"content-length"), self.max_body_bytes,
                                               lambda: read_body(scope, receive, self.max_body_bytes)) as slot:
                await self._forward(route, scope, send, slot.body, started)
        except BodyTooLarge as exc:
            await self._refuse(send, Rejected(413, BODY_TOO_LARGE, str(exc)))
        except Rejected as exc:
            await self._refuse(send, exc)

    async def _refuse(self, send: Send, refusal: Rejected) -> None:
        self.metrics.rejected(refusal.reason)
        await send_bytes(send, refusal.status, dumps({"error": str(refusal)}), extra=refusal.headers())

    async def _forward(self, route: Route, scope: Scope, send: Send, body: bytes, started: float) -> None:
        method = scope["method"]
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        if route_feedback.is_feedback(method, scope["path"]):
            return await self._feedback(route, method, target, headers, body, send)
        variant = route.picker.pick()
        upstream = route.config.upstream(variant)
        try:
            response = await route.pools[variant].request(method, upstream.base_path + target, headers, body, self.timeout)
            status, out = response.status, response.body
            extra = [(k, v) for k, v in response.headers if k not in HOP_BY_HOP and k != b"content-type"]
            content_type = next((v for k, v in response.headers if k == b"content-type"), b"application/json")
        except UpstreamError as exc:
            status, out, extra, content_type = 502, dumps({"error": f"upstream {variant} failed: {exc}"}), [], b"application/json"
        except Exception as exc:  # a router bug must cost one request, never the process or the connection
            log.exception("proxying to %s failed", variant)
            status, out, extra, content_type = 502, dumps({"error": f"router error: {type(exc).__name__}"}), [], b"application/json"
        extra += [(b"x-mlops-variant", variant.encode()), (b"x-mlops-version", upstream.version.encode())]
        await send_bytes(send, status, out, content_type, extra)
        self.metrics.observe(variant, status, time.perf_counter() - started)
        shadow = route.config.shadow
        if shadow is not None and method == "POST" and route.sampler.sample():
            self.mirror.submit(ShadowJob(route.pools["shadow"], route.config.model or self.model, shadow.version, method,
                                         shadow.base_path + target, headers, body, status, out,
                                         route.config.shadow_tolerance))

    async def _feedback(self, route: Route, method: str, target: str, headers: list[tuple[bytes, bytes]],
                        body: bytes, send: Send) -> None:
        """Send label feedback where route_feedback says, concurrently; answer with the one it picks."""
        where = route_feedback.targets(body, route.config)
        if not where.variants:
            self.metrics.feedback("none", 404)
            return await send_error(send, 404, where.error or "no variant to send feedback to")

        async def ask(variant: str, upstream: Upstream, pool: UpstreamPool,
                      version: str | None = None) -> tuple[route_feedback.Answer, list[tuple[bytes, bytes]]]:
            try:
                response = await pool.request(method, upstream.base_path + target, headers, body, self.timeout)
            except UpstreamError as exc:
                error = dumps({"error": f"upstream {variant} failed: {exc}"})
                return route_feedback.Answer(variant, 502, error, version), []
            except Exception as exc:  # a router bug must cost one request, never the process
                log.exception("feedback to %s failed", variant)
                error = dumps({"error": f"router error: {type(exc).__name__}"})
                return route_feedback.Answer(variant, 502, error, version), []
            return route_feedback.Answer(variant, response.status, response.body, version), response.headers

        asks = [ask(v, route.config.upstream(v), route.pools[v]) for v in where.variants]
        if where.by_id:  # versions that just left the router may have made the prediction
            asks += [ask(route_feedback.RETIRED, u, self.state.retired_pool(u), u.version)
                     for u in self.state.retired.upstreams()]
        asked = await asyncio.gather(*asks)
        chosen = route_feedback.pick([answer for answer, _ in asked])
        for answer, _ in asked:
            if 200 <= answer.status < 300:
                self.metrics.feedback_rows(answer.variant, *route_feedback.scored_rows(answer.body))
        response_headers = next((h for a, h in asked if a is chosen), [])
        content_type = next((v for k, v in response_headers if k == b"content-type"), b"application/json")
        version = chosen.version or route.config.upstream(chosen.variant).version
        extra = [(b"x-mlops-variant", chosen.variant.encode()), (b"x-mlops-version", version.encode())]
        await send_bytes(send, chosen.status, chosen.body, content_type, extra)
        self.metrics.feedback(chosen.variant, chosen.status)

    # ------------------------------------------------------------------------------ local endpoints
    async def _local(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method = scope["method"]
        if path == "/-/config" and method == "PUT":
            return await self._put_config(scope, receive, send)
        if method != "GET":
            return await send_error(send, 405, f"method {method} not allowed on {path}")
        if path == "/metrics":
            return await send_bytes(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode())
        if path == "/-/healthz":
            return await send_json(send, 200, {"status": "alive"})
        route = self.state.route
        if path == "/-/ready":
            if route is None:
                return await send_error(send, 503, "the router has no configuration yet")
            return await send_json(send, 200, {"ready": True, "generation": route.config.generation})
        if path == "/-/config":
            if route is None:
                return await send_error(send, 404, "no configuration applied yet")
            return await send_json(send, 200, route.config.document)
        await send_error(send, 404, f"no route for {method} {path}")

    async def _put_config(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is not None and not hmac.compare_digest(header(scope, b"authorization") or b"", self._token):
            return await send_error(send, 401, "a valid bearer token is required")
        try:
            doc = parse_json(await read_body(scope, receive, ADMIN_BODY_LIMIT))
            verdict, why = self.state.offer(doc, "api")
        except BodyTooLarge as exc:
            return await send_error(send, 413, str(exc))
        except ValueError as exc:  # ConfigError, and BadJSON for malformed JSON
            return await send_error(send, 400, str(exc))
        current = self.state.route.config.generation if self.state.route else None
        status = 409 if verdict in (Verdict.STALE, Verdict.CONFLICT) else 200
        await send_json(send, status, {"applied": verdict is Verdict.APPLY, "verdict": verdict.value, "reason": why, "generation": current})
