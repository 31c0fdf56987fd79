"""The I/O of the Alertmanager webhook: find the RetrainPolicies a batch of alerts matches and append the
new ones to their ``status.pendingAlerts``.

An alert is looked up only in the namespace its ``namespace`` label names (``logic.alerts.route``): the
policies of that one namespace are listed, so a policy elsewhere is never even read for it; alerts
without a watched namespace make no API call at all and come back as ignored, with the reason.

Only appends; the RetrainPolicy reconciler consumes. Both write with the object's resourceVersion, so a
409 means the other one (or Kopf's bookkeeping) wrote first: re-read, decide again on the fresh status
(``logic.alerts.merge_pending`` dedups against what is there now) and retry. The webhook answers 2xx only
after every matched policy holds its alerts; on any failure it answers 5xx and Alertmanager re-sends —
safe, because what was already written is a duplicate the second time.

The kube calls are parameters (``KubeAccess``) so the HTTP layer is tested with in-memory fakes; the real
ones (``kube_access``) are exercised by the integration test against the apiserver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence

from mlops_operator.logic import alerts as logic
from mlops_operator.providers import kube

log = logging.getLogger(__name__)

PLURAL = "retrainpolicies"
MAX_ATTEMPTS = 5  # status writes per policy before giving up with 503 (Alertmanager retries later)


@dataclass(frozen=True)
class KubeAccess:
    """The three API calls the webhook makes, and the namespaces it may act in."""

    list_policies: Callable[[str], Awaitable[list[dict[str, Any]]]]  # the policies of one namespace
    get_policy: Callable[[str, str], Awaitable[dict[str, Any] | None]]
    # (namespace, name, status fields, resourceVersion) -> the updated object; raises kube.Conflict on 409
    patch_status: Callable[[str, str, dict[str, Any], str], Awaitable[dict[str, Any]]]
    watched: tuple[str, ...] = ()  # MLOPS_NAMESPACES items (kopf globs), empty = all


def kube_access(namespaces: Sequence[str]) -> KubeAccess:
    """The real API calls, scoped like the operator's watches (``MLOPS_NAMESPACES``, empty = all).
    Per-namespace lists only: what a namespaced Role (rbac.namespaced) allows, and a ClusterRole too."""

    async def list_policies(namespace: str) -> list[dict[str, Any]]:
        return await kube.list_custom(PLURAL, namespace)

    async def get_policy(namespace: str, name: str) -> dict[str, Any] | None:
        return await kube.get_custom(PLURAL, namespace, name)

    async def patch_status(namespace: str, name: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
        return await kube.patch_status(PLURAL, namespace, name, status, resource_version=resource_version)

    return KubeAccess(list_policies, get_policy, patch_status, tuple(namespaces))


async def record_on_policy(policy: Mapping[str, Any], alerts: Sequence[logic.WebhookAlert], now: datetime,
                           access: KubeAccess) -> logic.Recorded | None:
    """Append the policy's new matching alerts; ``None`` when it no longer matches or was deleted."""
    meta = policy["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    current: Mapping[str, Any] | None = policy
    for _ in range(MAX_ATTEMPTS):
        if current is None:
            return None
        matched = logic.matching_alerts(current, alerts)
        if not matched:
            return None
        merge = logic.merge_pending(current.get("status") or {}, matched, now)
        if not merge.changed:
            return logic.Recorded(namespace, name, 0)
        try:
            written = await access.patch_status(namespace, name, {"pendingAlerts": merge.pending},
                                                current["metadata"]["resourceVersion"])
        except kube.Conflict:
            current = await access.get_policy(namespace, name)
            continue
        except kube.KubeError as exc:
            if exc.status == 404:  # deleted since it was listed: nothing to trigger
                return None
            raise
        stored = {logic.pending_key(p) for p in (written.get("status") or {}).get("pendingAlerts") or []}
        if not set(merge.recorded) <= stored:
            # A CRD older than the operator prunes the field silently: say so rather than answer 200.
            raise kube.Invalid(f"{namespace}/{name}: status.pendingAlerts was not stored; "
                               "the RetrainPolicy CRD is older than the operator (apply crds/)")
        if merge.dropped:
            log.warning("alerts webhook: %s/%s has %d pending alerts (the maximum): dropped the oldest %s",
                        namespace, name, len(merge.pending), ", ".join(merge.dropped))
        return logic.Recorded(namespace, name, len(merge.recorded), len(merge.dropped))
    raise kube.Unavailable(f"{namespace}/{name}: status changed {MAX_ATTEMPTS} times while recording alerts "
                           "(409 each time); retry later", 409)


async def record(alerts: Sequence[logic.WebhookAlert], now: datetime, access: KubeAccess) -> logic.Outcome:
    """Record the firing ``alerts`` on every RetrainPolicy of their own namespace that they match; per
    policy, how many were new; per alert that acted nowhere, why.

    Raises ``kube.KubeError`` when the apiserver cannot be read or written (the caller answers 5xx).
    """
    routing = logic.route(alerts, access.watched)  # resolved-only or namespace-less batches: no API call
    results, ignored = [], list(routing.ignored)
    for namespace, batch in routing.by_namespace.items():
        policies = sorted(await access.list_policies(namespace), key=lambda p: p["metadata"]["name"])
        for policy in policies:
            if logic.matching_alerts(policy, batch):
                result = await record_on_policy(policy, batch, now, access)
                if result is not None:
                    results.append(result)
        ignored.extend(logic.unmatched(batch, policies))
    return logic.Outcome(results, ignored)
