"""The operator process: Kopf settings, handler registration and the ``mlops-operator`` entrypoint.

Run it with ``mlops-operator`` (or ``kopf run -m mlops_operator.main``). Configuration comes from
``MLOPS_*`` environment variables (``operator_settings.py``). Why the Kopf settings below:

- finalizer and Kopf's own bookkeeping live under ``mlops.dev`` (annotations only: nothing in
  ``status`` that the CRD schema would have to allow, nothing under a foreign prefix); the finalizer is
  only on objects with work to do at deletion (``logic.deletion``, ``handlers.finalizers``);
- watches time out on both ends, so a silently stalled stream is dropped and re-listed rather than
  leaving the operator blind (state is re-read, handlers are level-triggered);
- events are posted from INFO up (Normal transitions and Warnings), never the handlers' debug chatter;
- standalone unless ``MLOPS_PEERING`` names a peering object: one replica (Recreate) is the default
  install, several replicas need peering so only one of them acts.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from aiohttp.web import RouteDef

# Importing the handler modules registers their handlers with Kopf.
from mlops_operator.handlers import (  # noqa: F401
    deletion,
    featureset,
    hyperparametersearch,
    modeldeployment,
    modelversion,
    retrainpolicy,
)
from mlops_operator import web
from mlops_operator.handlers import alerts, finalizers
from mlops_operator.logic.deletion import FINALIZER
from mlops_operator.operator_settings import OperatorSettings, operator_settings

PREFIX = "mlops.dev"
NETWORK_TIMEOUT = 60.0  # seconds for any single API request made by Kopf itself

# Only objects with work to do at deletion carry the finalizer (handlers.finalizers): the reconcile timers
# registered by the imports above no longer require it, and stop on their object's DELETED event.
finalizers.register_gone_markers()
finalizers.detach_timers()


def configure(settings: kopf.OperatorSettings, cfg: OperatorSettings) -> None:
    """Apply our choices to Kopf's settings (pure; tested without a cluster)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.watching.server_timeout = cfg.watch_server_timeout
    settings.watching.client_timeout = cfg.watch_client_timeout
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = NETWORK_TIMEOUT
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "mlops-operator"
    settings.posting.event_name_prefix = "mlops-"
    # Per-object event queues: idle workers exit soon so thousands of objects cost no idle tasks.
    settings.queueing.idle_timeout = 5.0
    settings.execution.max_workers = 4  # sync helpers only; API calls run in asyncio.to_thread
    if cfg.peering:
        settings.peering.standalone = False
        settings.peering.mandatory = True
        settings.peering.name = cfg.peering
        settings.peering.priority = cfg.peering_priority
    else:
        settings.peering.standalone = True


class QuietTicks(logging.Filter):
    """Drop Kopf's "Timer 'reconcile' succeeded." line: a tick per object every few seconds is routine,
    and at thousands of objects it would drown every line that matters. Failures still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer '") and message.endswith("' succeeded."))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    cfg = operator_settings()
    configure(settings, cfg)
    objects_log = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietTicks) for f in objects_log.filters):
        objects_log.addFilter(QuietTicks())
    if cfg.http_port:
        memo["web_runner"] = await web.start(cfg.http_port, extra_routes=[alerts_route(cfg)])
    logger.info("mlops-operator: namespaces=%s image=%s peering=%s alert-webhook=%s", cfg.namespace_list or "all",
                cfg.runtime_image, cfg.peering or "standalone",
                "on" if cfg.alert_token_value else "off (no MLOPS_ALERT_TOKEN)")


def alerts_route(cfg: OperatorSettings) -> RouteDef:
    """``POST /alerts`` recording on the RetrainPolicies of the watched namespaces."""
    access = alerts.kube_access(cfg.namespace_list)
    return web.alerts_route(cfg.alert_token_value, lambda batch, now: alerts.record(batch, now, access))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else ``$KUBECONFIG`` as it is NOW (the client library's own loader
    reads it once at import), else the client library (exec plugins and other auth providers)."""
    return (kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
            or kopf.login_via_client(**kwargs))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get("web_runner")
    if runner is not None:
        await runner.cleanup()


def run_kwargs(cfg: OperatorSettings) -> dict[str, Any]:
    """Arguments of ``kopf.run``: namespace scope, liveness endpoint and peering."""
    namespaces = cfg.namespace_list
    return {
        "clusterwide": not namespaces,
        "namespaces": namespaces,
        "liveness_endpoint": f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None,
        "standalone": not cfg.peering,
        "peering_name": cfg.peering or None,
        "priority": cfg.peering_priority,
    }


def cli() -> None:
    """``mlops-operator``: run the operator until SIGTERM/SIGINT."""
    kopf.configure(log_format=kopf.LogFormat.FULL, verbose=False)
    kopf.run(**run_kwargs(operator_settings()))


if __name__ == "__main__":
    cli()
