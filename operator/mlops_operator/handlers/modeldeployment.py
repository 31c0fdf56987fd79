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
from mlops_operator.handlers.reconciler import Context, Outcome, reconcile_tick, run_passes
from mlops_operator.handlers.rollout import RolloutProviders, rollout_step
from mlops_operator.operator_settings import OperatorSettings, operator_settings
from mlops_operator import rollout_metrics
from mlops_operator.providers import kube
from mlops_operator.providers.metrics import builtin as builtin_metrics

KIND, PLURAL = "ModelDeployment", "modeldeployments"
TICK = 1.0  # seconds between timer ticks; a tick that is not due costs no API call


def rollout_providers(s: OperatorSettings) -> RolloutProviders:
    """Model servers read artifacts with the serving Secret (read-only when configured), not the Jobs' one."""
    return RolloutProviders(image=s.runtime_image, s3_secret=s.serving_secret, image_pull_policy=s.image_pull_policy,
                            prometheus_url=s.prometheus_url, pod_defaults=parse_pod_defaults(s.pod_defaults))


_settings = operator_settings()
PROVIDERS = rollout_providers(_settings)


async def step(obj: dict[str, Any], ctx: Context) -> Outcome:
    return await rollout_step(obj, ctx, PROVIDERS)


@kopf.timer(GROUP, VERSION, PLURAL, id="reconcile", interval=min(TICK, _settings.reconcile_interval))
async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Ticks every second; passes run every ``reconcile_interval`` or sooner when the rollout asked to be
    looked at again (a step's end, an analysis run due, a router pod about to be Ready)."""
    await reconcile_tick(KIND, PLURAL, body, memo, logger, step, gated=True)


@kopf.on.update(GROUP, VERSION, PLURAL, id="spec-changed", field="spec")
@kopf.on.update(GROUP, VERSION, PLURAL, id="annotations-changed", field="metadata.annotations")
async def changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    try:  # the fast path; transient trouble is the timer's to retry with back-off
        await run_passes(KIND, PLURAL, body, memo, logger, step)
    except kube.KubeError as exc:
        logger.warning("pass after a change failed (%s); the timer retries", exc)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="forget", optional=True)
async def forget(namespace: str, name: str, **_: Any) -> None:
    """Children go with their owner references; only the in-memory counter history and gauges are ours to drop."""
    builtin_metrics.forget(namespace, name)
    rollout_metrics.forget(namespace, name)
