"""Operator-process configuration from ``MLOPS_*`` environment variables, loaded once.

Kept apart from ``settings.py`` (shared with the runtime pods) because only the operator needs to know
which namespaces it watches, which image its Jobs run, or how often it re-checks the world.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator process reads from its environment (prefix ``MLOPS_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    namespaces: str = Field(
        "", description="Comma-separated namespaces (globs allowed) to watch; empty = all namespaces.")
    runtime_image: str = Field(
        "localhost/mlops-runtime:dev", description="Image of training/serving pods (mlops-train, mlops-serve).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of every pod the operator creates.")
    s3_secret: str = Field(
        "mlops-s3", description="Secret in the custom resource's namespace with AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, S3_ENDPOINT_URL and S3_BUCKET. Training and materialize Jobs write with it.")
    serving_s3_secret: str = Field(
        "", description="Secret (same keys) the model-server pods read artifacts with, in the ModelDeployment's "
        "namespace: give it credentials that can only read the bucket. Empty = s3_secret.")
    online_store_url: str = Field(
        "", description="The online feature store (redis://host:port/db): materialize Jobs of FeatureSets with "
        "spec.online.enabled write to it, model servers read entities from it. Empty = none (online.enabled "
        "FeatureSets report OnlineServing=False, NotConfigured).")
    online_store_secret: str = Field(
        "mlops-redis", description="Secret in the workload's namespace whose key REDIS_PASSWORD is the online "
        "store's password (optional: a store without a password needs none).")
    http_port: int = Field(8081, ge=0, le=65535, description="Port of /metrics and the /alerts webhook; 0 = off.")
    alert_token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager must send to POST /alerts (surrounding whitespace ignored). "
        "Unset or empty = the webhook answers 503: disabled, never open. A SecretStr: never printed.")
    health_port: int = Field(8080, ge=0, le=65535, description="Port of Kopf's /healthz liveness probe; 0 = off.")
    peering: str | None = Field(
        None, description="Kopf peering object name; set it to run several replicas safely. Unset = standalone.")
    peering_priority: int = Field(0, description="Kopf peering priority of this replica.")
    leader_election: bool = Field(
        False, description="Run as one of several replicas: only the holder of the Lease `leader_lease` in "
        "`pod_namespace` acts (watches, handlers, the /alerts webhook); the others stand by. The chart turns "
        "it on. Off = this process acts alone (one replica, local runs).")
    leader_lease: str = Field("mlops-operator", description="Name of the coordination.k8s.io/v1 Lease.")
    pod_name: str = Field(
        "", description="This pod's name (downward API): the election identity's prefix and the pod that "
        "gets the mlops.dev/leader label. Empty = the host name, and no label.")
    pod_namespace: str = Field("", description="The operator's namespace (downward API): where the Lease lives.")
    lease_duration: float = Field(15.0, gt=0, description="Seconds a leader's renewal counts for a standby.")
    renew_deadline: float = Field(
        10.0, gt=0, description="Seconds the leader keeps acting without a successful renewal, then exits.")
    retry_period: float = Field(2.0, gt=0, description="Seconds between renewals and between standby attempts.")
    reconcile_interval: float = Field(
        10.0, gt=0, description="Seconds between level-triggered passes over each object (timers).")
    max_passes: int = Field(
        8, ge=1, description="Steps run back-to-back in one tick while each one changes something.")
    retry_base_delay: float = Field(5.0, gt=0, description="First back-off after a transient failure (s).")
    retry_max_delay: float = Field(300.0, gt=0, description="Back-off cap after repeated transient failures (s).")
    training_backoff_limit: int = Field(
        1, ge=0, description="Job backoffLimit of training Jobs (exit codes 2 and 4 never retry).")
    default_training_timeout: str = Field("1h", description="activeDeadline of a training Job without timeout.")
    job_ttl_seconds_after_finished: int | None = Field(
        None, ge=60, description="ttlSecondsAfterFinished of training and materialize Jobs. Unset = finished "
        "Jobs stay as the record of what ran (their owner removes them). At least a minute: the operator must "
        "see a finished Job before it goes, or it creates it again.")
    pod_defaults: str = Field(
        "", description="JSON of a `pod` block (serviceAccountName, imagePullSecrets, nodeSelector, tolerations, "
        "affinity, priorityClassName, securityContext, containerSecurityContext) applied to every pod the operator "
        "creates, under each resource's own `pod` block. Empty = none.")
    prometheus_url: str | None = Field(
        None, description="Prometheus HTTP API for rollout analysis; unset = the router's own counters.")
    watch_server_timeout: int = Field(
        300, gt=0, description="Seconds the apiserver keeps a watch open before it closes it.")
    watch_client_timeout: int = Field(
        330, gt=0, description="Seconds before the operator drops a silent watch and reconnects.")

    @property
    def alert_token_value(self) -> str | None:
        """The webhook token without the newline a token file usually ends with; ``None`` when unset."""
        token = self.alert_token.get_secret_value().strip() if self.alert_token else ""
        return token or None

    @property
    def serving_secret(self) -> str:
        """The Secret model servers read artifacts with: the read-only one when configured."""
        return self.serving_s3_secret.strip() or self.s3_secret

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]


@lru_cache(maxsize=1)
def operator_settings() -> OperatorSettings:
    return OperatorSettings()
