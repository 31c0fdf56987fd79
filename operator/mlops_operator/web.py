"""The operator's own HTTP server: ``/metrics`` and the Alertmanager webhook ``POST /alerts``.

The webhook is closed unless a token is configured (503 "disabled", never open), authenticates with a
bearer token compared in constant time, reads at most ``MAX_BODY`` bytes (413 beyond), answers 400 to a
body that is not Alertmanager's v4 payload, and 2xx only once every matched RetrainPolicy holds the
alerts in its status; 503 when the apiserver cannot be reached, so Alertmanager re-sends (deduplicated).
With leader election a replica that does not hold the Lease answers 503 (Alertmanager
re-sends to the leader). A firing alert acts only in the namespace its ``namespace`` label names; one that acts nowhere is counted
by reason in ``mlops_operator_alerts_ignored_total`` and logged once per (alertname, reason) per process.

Liveness (``/healthz``) is Kopf's own endpoint on a separate port, so a wedged metrics server can never
make the kubelet restart a healthy operator. The instruments ``/metrics`` serves are in ``instruments``.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mlops_operator.instruments import ALERT_REQUESTS, ALERTS_IGNORED, ALERTS_RECORDED
from mlops_operator.logic import alerts as alert_logic
from mlops_operator.providers.kube import KubeError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes of a webhook body; Alertmanager's max_alerts keeps real payloads far below

# Records firing alerts on the policies they match; raises KubeError when the apiserver fails.
AlertRecorder = Callable[[Sequence[alert_logic.WebhookAlert], datetime], Awaitable[alert_logic.Outcome]]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def _error(status: int, message: str, **headers: str) -> web.Response:
    """A refused webhook call: its one log line (never the token or the body) and a JSON error."""
    log.warning("alerts webhook: %d %s", status, message)
    ALERT_REQUESTS.labels(str(status)).inc()
    return web.json_response({"error": message}, status=status, headers=headers or None)


def alerts_route(token: str | None, recorder: AlertRecorder,
                 clock: Callable[[], datetime] = _utcnow,
                 leading: Callable[[], bool] | None = None) -> web.RouteDef:
    """``POST /alerts``. ``token`` None = disabled (503). ``recorder`` does the kube I/O (a parameter so
    tests can pass fakes); ``clock`` stamps receivedAt. ``leading`` (leader election on): a replica that
    does not hold the Lease right now answers 503 and records nothing, so Alertmanager re-sends until the
    leader has it (the Service selects only the leader's pod; this covers the seconds in which a deposed
    leader may still carry the label)."""
    expected = token.encode() if token else None
    logged = alert_logic.FirstSeen()  # (reason, alertname) pairs already logged as ignored

    async def handle(request: web.Request) -> web.Response:
        if expected is None:
            return _error(503, "alert webhook disabled: no token configured (set MLOPS_ALERT_TOKEN)")
        presented = _bearer(request)
        if presented is None or not hmac.compare_digest(presented.encode(), expected):
            return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if leading is not None and not leading():
            return _error(503, "standby replica: not the leader, alerts not recorded", **{"Retry-After": "5"})
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            payload = alert_logic.parse_payload(body)
        except alert_logic.PayloadError as exc:
            return _error(400, str(exc))
        try:
            outcome = await recorder(payload.alerts, clock())
        except KubeError as exc:
            return _error(503, f"{len(payload.alerts)} alerts not recorded ({type(exc).__name__}): {exc}",
                          **{"Retry-After": "10"})
        log.info("%s", alert_logic.log_line(payload, outcome))
        _count_ignored(outcome.ignored, logged)
        ALERTS_RECORDED.inc(sum(r.recorded for r in outcome.recorded))
        ALERT_REQUESTS.labels("200").inc()
        return web.json_response(alert_logic.summary(payload, outcome))

    return web.post("/alerts", handle)


def _count_ignored(ignored: Sequence[alert_logic.Ignored], logged: alert_logic.FirstSeen) -> None:
    """Count every ignored alert by reason; log only the first of each (reason, alertname) — Alertmanager
    re-sends a firing alert every repeat interval, which must not become a log line every time."""
    for item in ignored:
        ALERTS_IGNORED.labels(item.reason).inc()
        if logged.first(item.reason, item.alertname):
            log.warning('alerts webhook: %s; further ones with this alertname and reason are only counted in '
                        'mlops_operator_alerts_ignored_total{reason="%s"}', alert_logic.ignored_log_line(item),
                        item.reason)


async def _metrics(_: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The aiohttp application: ``/metrics`` plus ``extra_routes`` (the alert webhook)."""
    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes([web.get("/metrics", _metrics), *extra_routes])
    return app


async def start(port: int, host: str = "0.0.0.0", extra_routes: Iterable[web.RouteDef] = ()) -> web.AppRunner:
    """Serve the app until the returned runner is cleaned up (``await runner.cleanup()``)."""
    runner = web.AppRunner(build_app(extra_routes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("http server (/metrics, /alerts) listening on %s:%d", host, port)
    return runner
