"""The training Job of a ModelVersion, as a plain manifest (pure and deterministic).

Why each choice:
- The name is a function of the ModelVersion, so a crashed operator finds the Job it already created
  (create returns AlreadyExists) instead of starting a second training run.
- The pod meets Pod Security "restricted" and has a read-only root filesystem; ``/tmp`` is the only
  writable place (HOME points there for libraries that cache under ``~``). ``spec.training.pod``
  (merged over the operator's defaults) adds a service account, pull secrets and placement
  (``builders.pod``).
- S3 credentials come from the Secret by ``secretKeyRef``: never literal in a spec, never in the
  operator's logs. The pod gets no service-account token: the trainer never talks to the apiserver.
- ``podFailurePolicy`` fails the Job at once on exit codes 2 (invalid input) and 4 (version already
  exists): retrying cannot fix them. Storage errors (3) and crashes may retry up to ``backoffLimit``;
  disruptions (node drain, preemption) do not count against it.
- ``ttlSecondsAfterFinished`` only when the operator is configured with one (chart value
  ``jobs.ttlSecondsAfterFinished``): by default the finished Job and its pod are the record of what ran,
  and the owner reference removes them with their owner. The outcome is copied into the owner's status
  within a reconcile interval; a Job that vanished before that is created again, hence a minimum TTL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.builders.labels import model_labels, owner_reference
from mlops_operator.builders.names import child_name
from mlops_operator.builders.pod import apply_pod_overrides

CONTAINER = "train"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET")
_OPTIONAL_SECRET_KEYS = frozenset({"S3_ENDPOINT_URL"})  # absent on AWS proper
FAIL_FAST_EXIT_CODES = (2, 4)


def training_job_name(model_version: str) -> str:
    """``mv-<name>-train``, truncated and hashed to 63 characters when the name is long."""
    return child_name("mv", model_version, "train")


@dataclass(frozen=True)
class TrainingJobInput:
    """Everything the training Job depends on; the builder adds nothing that is not in here."""

    owner: Mapping[str, Any]              # the ModelVersion body (apiVersion, kind, metadata.name/uid)
    model: str
    training: Mapping[str, Any]           # spec.training, camelCase, with featureSet.version resolved
    artifact_prefix: str                  # s3://<bucket>/models/<model>/<modelversion>/
    image: str
    s3_secret: str
    active_deadline_seconds: int
    backoff_limit: int = 1
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    tmp_size_limit: str = "2Gi"        # scratch space for datasets; bounded so one run cannot fill the node
    ttl_seconds_after_finished: int | None = None  # None: the finished Job stays
    pod: PodOverrides | None = None       # spec.training.pod merged over the operator's podDefaults


def s3_env(secret: str) -> list[dict[str, Any]]:
    """The S3 settings as ``secretKeyRef`` env vars (the shape ``settings.s3_settings()`` reads)."""
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key,
                                                     **({"optional": True} if key in _OPTIONAL_SECRET_KEYS else {})}}}
        for key in S3_SECRET_KEYS
    ]


ONLINE_PASSWORD_KEY = "REDIS_PASSWORD"


def online_store_env(url: str, secret: str) -> list[dict[str, Any]]:
    """The online store's address and password (``secretKeyRef``, optional: a store may have none); nothing
    without a store."""
    if not url:
        return []
    return [{"name": "MLOPS_ONLINE_STORE_URL", "value": url},
            {"name": ONLINE_PASSWORD_KEY, "valueFrom": {"secretKeyRef": {"name": secret, "key": ONLINE_PASSWORD_KEY,
                                                                          "optional": True}}}]


def training_env(inp: TrainingJobInput) -> list[dict[str, Any]]:
    meta = inp.owner["metadata"]
    plain = {
        "MLOPS_MODEL": inp.model,
        "MLOPS_MODEL_VERSION": meta["name"],
        "MLOPS_TRAINING": json.dumps(dict(inp.training), sort_keys=True, separators=(",", ":")),
        "MLOPS_ARTIFACT_PREFIX": inp.artifact_prefix,
        "HOME": "/tmp",
        **inp.extra_env,
    }
    return [{"name": k, "value": v} for k, v in plain.items()] + s3_env(inp.s3_secret)


def build_runtime_job(*, name: str, owner: Mapping[str, Any], labels: Mapping[str, str], container_name: str,
                      command: list[str], env: list[dict[str, Any]], image: str, image_pull_policy: str,
                      backoff_limit: int, active_deadline_seconds: int, resources: Mapping[str, Any],
                      tmp_size_limit: str, ttl_seconds_after_finished: int | None = None,
                      pod: PodOverrides | None = None) -> dict[str, Any]:
    """A batch Job running one runtime entrypoint under the restricted profile (training, materializing).

    ``ttl_seconds_after_finished`` becomes ``spec.ttlSecondsAfterFinished`` only when it is not None;
    ``pod`` (service account, pull secrets, placement, security overrides) applies to its pod.
    """
    meta = owner["metadata"]
    container: dict[str, Any] = {
        "name": container_name,
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": command,
        "env": env,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources:
        container["resources"] = dict(resources)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(labels),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_seconds,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": container_name, "operator": "In",
                                 "values": list(FAIL_FAST_EXIT_CODES)}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": apply_pod_overrides({
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": tmp_size_limit}}],
                }, pod),
            },
        },
    }
    if ttl_seconds_after_finished is not None:
        job["spec"]["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return job


def build_training_job(inp: TrainingJobInput) -> dict[str, Any]:
    """The Job manifest that trains one ModelVersion."""
    meta = inp.owner["metadata"]
    return build_runtime_job(
        name=training_job_name(meta["name"]), owner=inp.owner,
        labels=model_labels(inp.model, meta["name"], component="training"), container_name=CONTAINER,
        command=["mlops-train"], env=training_env(inp), image=inp.image, image_pull_policy=inp.image_pull_policy,
        backoff_limit=inp.backoff_limit, active_deadline_seconds=inp.active_deadline_seconds,
        resources=inp.resources, tmp_size_limit=inp.tmp_size_limit,
        ttl_seconds_after_finished=inp.ttl_seconds_after_finished, pod=inp.pod)
