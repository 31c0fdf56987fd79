"""The materialize Job of one FeatureSet snapshot, as a plain manifest (pure and deterministic).

Same pod shape as training (``builders.job``): restricted profile, read-only root, ``/tmp`` scratch, S3
credentials by ``secretKeyRef``, no service-account token, fail at once on exit codes 2 (invalid input,
including a quality policy ``fail`` that was violated) and 4 (the version is taken). The name is a pure
function of (FeatureSet, snapshot version), and the version number is recorded in status before the Job
is created, so a crash between the two finds the same Job instead of starting a second one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.builders.job import build_runtime_job, online_store_env, s3_env
from mlops_operator.builders.layout import snapshot_prefix  # noqa: F401  (re-exported)
from mlops_operator.builders.labels import runtime_job_labels
from mlops_operator.builders.names import child_name

CONTAINER = "materialize"
LABEL_FEATURESET = "mlops.dev/featureset"
LABEL_SNAPSHOT = "mlops.dev/snapshot"


def materialize_job_name(feature_set: str, version: str) -> str:
    """``fs-<name>-<version>``, truncated and hashed to 63 characters when the name is long."""
    return child_name("fs", feature_set, version)


def featureset_labels(feature_set: str, version: str | None = None) -> dict[str, str]:
    return runtime_job_labels(LABEL_FEATURESET, feature_set, "materialize", LABEL_SNAPSHOT, version)


@dataclass(frozen=True)
class MaterializeJobInput:
    """Everything the materialize Job depends on; the builder adds nothing that is not in here."""

    owner: Mapping[str, Any]          # the FeatureSet body (apiVersion, kind, metadata.name/uid/namespace)
    spec: Mapping[str, Any]           # spec, camelCase as in the CRD
    version: str                      # v1, v2, ...
    prefix: str                       # s3://<bucket>/features/<namespace>/<featureset>/<version>/
    image: str
    s3_secret: str
    spec_hash: str = ""               # of the data-shaping spec fields, recorded in the manifest
    active_deadline_seconds: int = 3600
    backoff_limit: int = 1
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    tmp_size_limit: str = "2Gi"
    ttl_seconds_after_finished: int | None = None  # None: the finished Job stays as the record of what ran
    pod: PodOverrides | None = None   # spec.materialize.pod merged over the operator's podDefaults
    online_store_url: str = ""        # with spec.online.enabled: where the latest values go ("" = nowhere)
    online_store_secret: str = ""     # its password's Secret (key REDIS_PASSWORD)


def materialize_env(inp: MaterializeJobInput) -> list[dict[str, Any]]:
    meta = inp.owner["metadata"]
    plain = {
        "MLOPS_FEATURESET": meta["name"],
        "MLOPS_FEATURESET_UID": meta["uid"],
        "MLOPS_FEATURESET_SPEC": json.dumps(dict(inp.spec), sort_keys=True, separators=(",", ":")),
        "MLOPS_SNAPSHOT_VERSION": inp.version,
        "MLOPS_SNAPSHOT_PREFIX": inp.prefix,
        "MLOPS_OWNER": json.dumps({"namespace": meta["namespace"], "kind": "FeatureSet", "name": meta["name"],
                                   "uid": meta["uid"]}, sort_keys=True, separators=(",", ":")),
        "MLOPS_SPEC_HASH": inp.spec_hash,
        "HOME": "/tmp",
    }
    online = (inp.spec.get("online") or {}).get("enabled") is True
    return ([{"name": k, "value": v} for k, v in plain.items()] + s3_env(inp.s3_secret)
            + (online_store_env(inp.online_store_url, inp.online_store_secret) if online else []))


def build_materialize_job(inp: MaterializeJobInput) -> dict[str, Any]:
    """The Job manifest that builds one snapshot."""
    name = inp.owner["metadata"]["name"]
    return build_runtime_job(
        name=materialize_job_name(name, inp.version), owner=inp.owner,
        labels=featureset_labels(name, inp.version), container_name=CONTAINER, command=["mlops-materialize"],
        env=materialize_env(inp), image=inp.image, image_pull_policy=inp.image_pull_policy,
        backoff_limit=inp.backoff_limit, active_deadline_seconds=inp.active_deadline_seconds,
        resources=inp.resources, tmp_size_limit=inp.tmp_size_limit,
        ttl_seconds_after_finished=inp.ttl_seconds_after_finished, pod=inp.pod)
