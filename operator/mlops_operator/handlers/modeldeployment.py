"""ModelDeployment: a timer drives the rollout pass loop; spec and annotation changes take the fast path.

All decisions are in ``logic.rollout`` (pure state machines); ``handlers.rollout`` observes the world,
applies the plan and hands the new status to the shared pass loop. Manual promote / abort / retry are
annotations (``mlops.dev/promote`` ...), so an annotation change re-runs the loop at once.
"""

from __future__ import annotations

from typing import Any

import kopf

from mlops_operator.api.v1alpha1.common import GROUP, VERSION
from mlops_operator.api.v1alpha1.pod import parse_pod_defaults
from mlops_operator.handlers.reconciler import Context, register
from mlops_operator.handlers.rollout import PLURAL, RolloutProviders, rollout_reconciler
from mlops_operator.logic.rollout.state import VersionInfo
from mlops_operator.logic.rollout.version_index import IndexKey, Lookup, index_entries
from mlops_operator.operator_settings import OperatorSettings, operator_settings
from mlops_operator import rollout_metrics
from mlops_operator.providers.metrics import builtin as builtin_metrics

VERSIONS_INDEX = "modelversions_index"  # the Kopf index id, also the keyword Kopf passes it to handlers as
TICK = 1.0  # seconds between timer ticks; a tick that is not due costs no API call


def rollout_providers(s: OperatorSettings) -> RolloutProviders:
    """Model servers read artifacts with the serving Secret (read-only when configured), not the Jobs' one."""
    return RolloutProviders(image=s.runtime_image, s3_secret=s.serving_secret, image_pull_policy=s.image_pull_policy,
                            prometheus_url=s.prometheus_url, pod_defaults=parse_pod_defaults(s.pod_defaults))


PROVIDERS = rollout_providers(operator_settings())


@kopf.index(GROUP, VERSION, "modelversions", id=VERSIONS_INDEX)
def modelversions_index(body: kopf.Body, **_: Any) -> dict[IndexKey, VersionInfo]:
    """ModelVersions by (namespace, model) and by (namespace, name), kept current by the operator's watch:
    a pass looks its versions up here instead of listing the namespace. Kopf fills every index before it
    runs any handler, so no pass ever sees a half-filled one."""
    return index_entries(body)


def versions_lookup(ctx: Context) -> Lookup:
    index = ctx.indices[VERSIONS_INDEX]
    return lambda key: index.get(key, ())


RECONCILER = rollout_reconciler(PROVIDERS, versions_lookup, indices=(VERSIONS_INDEX,))
step = RECONCILER.step


# Passes run every reconcile interval, or sooner when the rollout asked to be looked at again (a step's end,
# an analysis run due, a router pod about to be Ready); any annotation change may be a manual request.
register(RECONCILER, on_change=("spec", ["metadata", "annotations"]), tick=TICK)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="forget", optional=True)
async def forget(namespace: str, name: str, **_: Any) -> None:
    """Children go with their owner references; only the in-memory counter history and gauges are ours to drop."""
    builtin_metrics.forget(namespace, name)
    rollout_metrics.forget(namespace, name)
