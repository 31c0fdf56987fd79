"""The operator's own HTTP server: ``/metrics`` now, the Alertmanager webhook ``/alerts`` later.

Liveness (``/healthz``) is Kopf's own endpoint on a separate port, so a wedged metrics server can never
make the kubelet restart a healthy operator. Instruments are module-level with few labels (kind, result),
as in the KServe model server: cardinality stays fixed no matter how many objects exist.
"""

from __future__ import annotations

import logging
from typing import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

log = logging.getLogger(__name__)

RECONCILES = Counter(
    "mlops_operator_reconciles_total",
    "Reconcile passes by kind and result (changed, unchanged, retrying, failed).",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "mlops_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, including API and storage calls.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_CREATED = Counter(
    "mlops_operator_jobs_created_total",
    "Jobs created by the operator (AlreadyExists is not counted), by the kind that owns them.",
    ["kind"],
)


async def _metrics(_: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The aiohttp application; later features (the alert webhook) add their routes here."""
    app = web.Application(client_max_size=1024 * 1024)
    app.add_routes([web.get("/metrics", _metrics), *extra_routes])
    return app


async def start(port: int, host: str = "0.0.0.0", extra_routes: Iterable[web.RouteDef] = ()) -> web.AppRunner:
    """Serve the app until the returned runner is cleaned up (``await runner.cleanup()``)."""
    runner = web.AppRunner(build_app(extra_routes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics server listening on %s:%d", host, port)
    return runner
