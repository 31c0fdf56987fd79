"""The operator process: Kopf settings, handler registration and the ``mlops-operator`` entrypoint.

Run it with ``mlops-operator`` (or ``kopf run -m mlops_operator.main``). Configuration comes from
``MLOPS_*`` environment variables (``operator_settings.py``). Why the Kopf settings below:

- finalizer and Kopf's own bookkeeping live under ``mlops.dev`` (annotations only: nothing in
  ``status`` that the CRD schema would have to allow, nothing under a foreign prefix); the finalizer is
  only on objects with work to do at deletion (``logic.deletion``, ``handlers.finalizers``);
- watches time out on both ends, so a silently stalled stream is dropped and re-listed rather than
  leaving the operator blind (state is re-read, handlers are level-triggered);
- events are posted from INFO up (Normal transitions and Warnings), never the handlers' debug chatter;
- several replicas (the chart's default is two) elect a leader on a ``coordination.k8s.io/v1`` Lease
  (``MLOPS_LEADER_ELECTION``, ``providers.leader``): the startup handler does not return until this
  replica holds the Lease, and Kopf starts no watch, handler or timer before it returns, so a standby does
  nothing but answer ``/healthz`` (its own small server on the health port until it leads) and 503 on
  ``/alerts``. The leader labels its pod ``mlops.dev/leader=true`` (the Service selects that label); a
  leader that cannot renew exits at once and comes back as a standby; a clean shutdown releases the Lease.
  Kopf stays ``standalone`` (its peering is not an election: docs/install.md, "High availability").
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import kopf
from aiohttp import web as aioweb
from aiohttp.web import RouteDef

# Importing the handler modules registers their handlers with Kopf.
from mlops_operator.handlers import (  # noqa: F401
    batchprediction,
    deletion,
    featureset,
    hyperparametersearch,
    modeldeployment,
    modelversion,
    retrainpolicy,
)
from mlops_operator import instruments, web
from mlops_operator.handlers import alerts, finalizers
from mlops_operator.logic.deletion import FINALIZER
from mlops_operator.logic import leader as leader_logic
from mlops_operator.operator_settings import OperatorSettings, operator_settings
from mlops_operator.providers import kube, leader

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
    elector = elector_for(cfg) if cfg.leader_election else None
    if cfg.http_port:
        memo["web_runner"] = await web.start(cfg.http_port, extra_routes=[alerts_route(cfg, elector)])
    logger.info("mlops-operator: namespaces=%s image=%s peering=%s leader-election=%s alert-webhook=%s",
                cfg.namespace_list or "all", cfg.runtime_image, cfg.peering or "standalone",
                f"lease {cfg.pod_namespace}/{cfg.leader_lease} as {elector.identity}" if elector else "off",
                "on" if cfg.alert_token_value else "off (no MLOPS_ALERT_TOKEN)")
    if elector is not None:
        memo["elector"] = elector
        await stand_by_until_leading(cfg, elector, memo, logger)


def pod_label(cfg: OperatorSettings) -> str:
    return cfg.pod_name or socket.gethostname()


def elector_for(cfg: OperatorSettings) -> leader.LeaseElector:
    """This process's candidate: a new identity per process (pod name + random suffix), so a restarted
    container is a new candidate that waits for the old lease to expire, like any other."""
    if cfg.peering:
        raise kopf.PermanentError("MLOPS_LEADER_ELECTION and MLOPS_PEERING exclude each other: choose one")
    if not cfg.pod_namespace:
        raise kopf.PermanentError("MLOPS_LEADER_ELECTION needs MLOPS_POD_NAMESPACE (the Lease's namespace)")
    timings = leader_logic.Timings(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period)
    pod = pod_label(cfg)
    identity = f"{pod}_{uuid.uuid4().hex[:8]}"

    async def acquired(leaderless: float | None) -> None:
        instruments.LEADER.labels(pod).set(1)
        instruments.LEADER_TRANSITIONS.labels("acquired").inc()
        if leaderless is not None:
            instruments.LEADERLESS_SECONDS.observe(leaderless)
        await label_own_pod(cfg, True)

    return leader.LeaseElector(identity, cfg.pod_namespace, cfg.leader_lease, timings,
                               on_acquired=acquired, on_lost=lambda: exit_on_lost(pod))


def exit_on_lost(pod: str) -> None:
    """Leadership lost while acting: stop everything NOW. Kopf's graceful stop would let handlers and
    timers run on while another replica may already lead; the kubelet restarts the container, which comes
    back as a standby (and clears the leader label first)."""
    instruments.LEADER.labels(pod).set(0)
    instruments.LEADER_TRANSITIONS.labels("lost").inc()
    logging.getLogger(__name__).critical("leader election lost: exiting so that only the leader acts")
    logging.shutdown()
    os._exit(1)


async def label_own_pod(cfg: OperatorSettings, leading: bool) -> None:
    """The Service routes /alerts to the pod labelled mlops.dev/leader=true. Failing to set it is logged,
    not fatal: the leader still reconciles, and Alertmanager keeps re-sending until the label is there."""
    if not cfg.pod_name:
        return
    try:
        await leader.set_pod_label(cfg.pod_namespace, cfg.pod_name, leading)
    except kube.KubeError as exc:
        logging.getLogger(__name__).error("leader label on pod %s/%s not %s: %s", cfg.pod_namespace,
                                          cfg.pod_name, "set" if leading else "removed", exc)


async def stand_by_until_leading(cfg: OperatorSettings, elector: leader.LeaseElector, memo: kopf.Memo,
                                 logger: kopf.Logger) -> None:
    """Block Kopf's startup (so every watch, handler and timer) until this replica holds the Lease. Until
    then the health port answers /healthz itself (the standby is alive: liveness must not restart it,
    and readiness keeps it counted by the PodDisruptionBudget). The election runs on its own thread and
    loop (``leader.ElectorThread``): however long Kopf's loop is busy, renewals keep their schedule."""
    instruments.LEADER.labels(pod_label(cfg)).set(0)
    await label_own_pod(cfg, False)  # a container restarted in the same pod may still carry it
    standby = await standby_health(cfg.health_port, elector) if cfg.health_port else None
    try:
        await memo.setdefault("election", leader.ElectorThread(elector)).until_leading()
    finally:
        if standby is not None:
            await standby.cleanup()  # Kopf's own /healthz binds the port once startup returns
    logger.info("leader election: leading as %s; starting the handlers", elector.identity)


async def standby_health(port: int, elector: leader.LeaseElector) -> aioweb.AppRunner:
    async def healthz(_: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"standby": True, "leader": elector.holder or None})

    app = aioweb.Application()
    app.add_routes([aioweb.get("/healthz", healthz)])
    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    await aioweb.TCPSite(runner, "0.0.0.0", port).start()
    return runner


def alerts_route(cfg: OperatorSettings, elector: leader.LeaseElector | None = None) -> RouteDef:
    """``POST /alerts`` recording on the RetrainPolicies of the watched namespaces (only while leading)."""
    access = alerts.kube_access(cfg.namespace_list)
    return web.alerts_route(cfg.alert_token_value, lambda batch, now: alerts.record(batch, now, access),
                            leading=elector.is_leader if elector is not None else None)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else ``$KUBECONFIG`` as it is NOW (the client library's own loader
    reads it once at import), else the client library (exec plugins and other auth providers)."""
    return (kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
            or kopf.login_via_client(**kwargs))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """After Kopf has stopped every handler: hand the Lease over at once (the standby takes it within a
    retry period instead of a lease duration) and drop the leader label."""
    elector, election = memo.get("elector"), memo.get("election")
    if elector is not None and election is not None and elector.is_leader():
        cfg = operator_settings()
        await election.release()
        instruments.LEADER.labels(pod_label(cfg)).set(0)
        instruments.LEADER_TRANSITIONS.labels("released").inc()
        await label_own_pod(cfg, False)
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
