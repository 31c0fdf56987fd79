"""The serving objects of a ModelDeployment, as plain manifests (pure and deterministic).

Objects (every one owned by the ModelDeployment, so the garbage collector removes them with it):
- per version: a Deployment of ``mlops-serve`` and a Service, both ``mdep-<name>-<version>-<hash>``. One
  per *version*, not per role: promoting a candidate only changes routes, never restarts its pods. The
  hash (of name and version together) keeps two ModelDeployments whose names share a prefix apart, and
  makes any version name a valid Service name (dots are not allowed there).
- the entry Service ``<name>`` on port 8080: what clients call. With the builtin router it selects the
  router pods; with other routers it selects the stable version's pods (a selector switch).
- the builtin router: Deployment + Service-less pods behind the entry Service, a ConfigMap with the
  routing document (durable; read at start) and a Secret with the admin token for ``PUT /-/config``.
- the preview Service ``mdep-<name>-preview`` of a blue/green rollout (the candidate before the switch).

Pods meet Pod Security "restricted" with a read-only root filesystem (``/tmp`` is an emptyDir), get no
service-account token (unless ``spec.serving.pod`` asks for one; its service account, pull secrets and
placement apply to the server pods, and all but the service account to the router pods), and read S3 credentials only by ``secretKeyRef``, from ``ServingInput.s3_secret``:
the serving Secret (``MLOPS_SERVING_S3_SECRET``), which may hold credentials that can only read the bucket,
since a model server never writes (training and materialize Jobs keep the read-write ``MLOPS_S3_SECRET``).
Router pods get no S3 credentials at all. With ``spec.logging`` (inference logging) the server also writes
``inference-logs/``: it then gets ``MLOPS_LOG_*`` settings and the log writer's own credentials
(``MLOPS_LOG_AWS_ACCESS_KEY_ID`` ...) from the read-write Secret (``ServingInput.log_s3_secret``, by default
the operator's ``MLOPS_S3_SECRET``), while artifacts are still read with the serving Secret's names
(``AWS_ACCESS_KEY_ID`` ...). The pods' ``mlops.dev/role`` is
the role they were launched with (``pod_role``); the Deployment's own label follows the current role,
so promotion changes a label, not a pod template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.modeldeployment import InferenceLogging, ServingLimits
from mlops_operator.api.v1alpha1.primitives import parse_duration
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.builders.job import online_store_env, s3_env
from mlops_operator.builders.labels import LABEL_COMPONENT, LABEL_MODELVERSION, model_labels, owner_reference
from mlops_operator.builders.names import child_name, label_value
from mlops_operator.builders.pod import apply_pod_overrides
from mlops_operator.operator_settings import operator_settings

PORT = 8080
PORT_NAME = "http"
LABEL_ROLE = "mlops.dev/role"
LABEL_MODELDEPLOYMENT = "mlops.dev/modeldeployment"
VERSION_ANNOTATION = "mlops.dev/modelversion"  # the full version name (a label value may be shortened)
# Kinds made beside the servers (HorizontalPodAutoscaler, PodDisruptionBudget), comma-separated: the next
# pass knows what to remove once the spec no longer asks for it, without reading them every pass.
COMPANIONS_ANNOTATION = "mlops.dev/companions"
SERVING, ROUTER = "serving", "router"
ROUTER_CONFIG_DIR = "/etc/mlops-router"
ROUTER_CONFIG_KEY = "config.json"
ROUTER_TOKEN_KEY = "token"
ROUTES_ANNOTATION = "mlops.dev/routes"  # the routes an HTTPRoute / InferenceService carries, by version
# Used when spec.serving.resources is absent: requests so the scheduler can place pods, a memory limit so
# one bad model cannot starve a node (no CPU limit: throttling hurts latency more than it protects).
DEFAULT_SERVING_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
DEFAULT_ROUTER_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
PROMETHEUS_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}


# ------------------------------------------------------------------------------------------------ names


def version_name(deployment: str, version: str) -> str:
    """``mdep-<deployment>-<version>-<hash5>``: the Deployment and Service of one version (<= 63 chars).

    >>> version_name("bc", "bc-v7")
    'mdep-bc-bc-v7-9e16c'
    """
    digest = hashlib.sha256(f"{deployment}/{version}".encode()).hexdigest()[:5]
    return f"{child_name('mdep', deployment, version.replace('.', '-'), limit=57)}-{digest}"


def router_name(deployment: str) -> str:
    """The router's Deployment, ConfigMap and Secret: ``mdep-<deployment>-router``."""
    return child_name("mdep", deployment, "router")


def preview_name(deployment: str) -> str:
    return child_name("mdep", deployment, "preview")


def version_url(namespace: str, deployment: str, version: str) -> str:
    """In-cluster base URL of one version's Service (what the router forwards to)."""
    return f"http://{version_name(deployment, version)}.{namespace}.svc:{PORT}"


# ----------------------------------------------------------------------------------------------- labels


def version_selector(deployment: str, version: str) -> dict[str, str]:
    """The pods of one version of one ModelDeployment (the Deployment's immutable selector)."""
    return {LABEL_MODELDEPLOYMENT: label_value(deployment), LABEL_MODELVERSION: label_value(version),
            LABEL_COMPONENT: SERVING}


def router_selector(deployment: str) -> dict[str, str]:
    return {LABEL_MODELDEPLOYMENT: label_value(deployment), LABEL_COMPONENT: ROUTER}


def _labels(owner: Mapping[str, Any], model: str, version: str | None, component: str,
            role: str | None = None) -> dict[str, str]:
    labels = model_labels(model, version, component=component)
    labels[LABEL_MODELDEPLOYMENT] = label_value(owner["metadata"]["name"])
    if role:
        labels[LABEL_ROLE] = role
    return labels


def _meta(owner: Mapping[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [owner_reference(owner)]}


def _pod_spec(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], pod: PodOverrides | None, *,
              identity: bool) -> dict[str, Any]:
    return apply_pod_overrides({
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, *volumes],
    }, pod, identity=identity)


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}


def _service(owner: Mapping[str, Any], name: str, labels: dict[str, str], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, name, labels),
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]},
    }


# ---------------------------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class ServingInput:
    """Everything one version's serving Deployment depends on."""

    owner: Mapping[str, Any]            # the ModelDeployment body (apiVersion, kind, metadata name/namespace/uid)
    model: str
    version: str
    role: str                           # current role: the Deployment's label
    replicas: int | None                # None: an autoscaler owns them (left out of what the operator applies)
    artifact_uri: str                   # ModelVersion status.artifact.uri
    image: str
    s3_secret: str                      # the serving Secret: read-only credentials suffice
    artifact_sha256: str | None = None
    pod_role: str | None = None         # role the pods were launched with; ``role`` for a new Deployment
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    progress_deadline_seconds: int = 600
    log_s3_secret: str | None = None    # read-write Secret of the inference log writer; None: MLOPS_S3_SECRET
    pod: PodOverrides | None = None     # spec.serving.pod merged over the operator's podDefaults
    pod_compiled_model: str | None = None  # compiledModel running pods were launched with, when they keep it
    companions: tuple[str, ...] = ()    # kinds made beside the servers (COMPANIONS_ANNOTATION)


def logging_env(inp: ServingInput) -> list[dict[str, Any]]:
    """``MLOPS_LOG_*`` of ``spec.logging`` plus the log writer's credentials; nothing when logging is off."""
    spec = (inp.owner.get("spec") or {}).get("logging")
    if spec is None:
        return []
    cfg = InferenceLogging.model_validate(spec)  # the API's defaults (the CRD carries none)
    if cfg.sample_rate <= 0:
        return []
    meta = inp.owner["metadata"]
    plain = {
        "MLOPS_LOG_SAMPLE_RATE": repr(cfg.sample_rate),
        "MLOPS_LOG_BATCH_ROWS": str(cfg.batch_rows),
        "MLOPS_LOG_FLUSH_INTERVAL": str(int(parse_duration(cfg.flush_interval).total_seconds())),
        "MLOPS_LOG_MAX_BUFFER_ROWS": str(cfg.max_buffer_rows),
        "MLOPS_LOG_NAMESPACE": meta["namespace"],
        "MLOPS_LOG_DEPLOYMENT": meta["name"],
    }
    secret = inp.log_s3_secret or operator_settings().s3_secret
    credentials = [{**ref, "name": f"MLOPS_LOG_{ref['name']}"} for ref in s3_env(secret)]
    return [{"name": k, "value": v} for k, v in plain.items()] + credentials


def limits_env(owner: Mapping[str, Any], router: bool = False) -> list[dict[str, Any]]:
    """``MLOPS_LIMIT_*`` / ``MLOPS_MAX_BODY_BYTES`` of ``spec.serving.limits``; nothing when absent (the
    runtime's defaults are the API's). The router's in-flight caps are per serving replica, so it gets them
    whenever there is more than one replica too.

    >>> limits_env({"spec": {"serving": {"replicas": 2}}}, router=True)[1]
    {'name': 'MLOPS_LIMIT_MAX_IN_FLIGHT', 'value': '128'}
    """
    serving = (owner.get("spec") or {}).get("serving") or {}
    replicas = max(1, int(serving.get("replicas", 1)))
    if serving.get("limits") is None and not (router and replicas > 1):
        return []
    cfg = ServingLimits.model_validate(serving.get("limits") or {})  # the API's defaults (the CRD carries none)
    scale = replicas if router else 1
    plain = {
        "MLOPS_MAX_BODY_BYTES": cfg.max_body_bytes,
        "MLOPS_LIMIT_MAX_IN_FLIGHT": cfg.max_concurrent_requests * scale,
        "MLOPS_LIMIT_MAX_LARGE_IN_FLIGHT": cfg.max_concurrent_large_requests * scale,
        "MLOPS_LIMIT_LARGE_BYTES": cfg.large_request_bytes,
    }
    if not router:
        plain["MLOPS_LIMIT_MAX_ROWS"] = cfg.max_rows_per_request
        plain["MLOPS_LIMIT_MAX_ABS_VALUE"] = repr(cfg.max_abs_value)
    return [{"name": k, "value": str(v)} for k, v in plain.items()]


def entity_env(owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The online store and the namespace its keys start with, so a version trained on a FeatureSet answers
    entity requests; nothing when the operator has no online store."""
    settings = operator_settings()
    env = online_store_env(settings.online_store_url.strip(), settings.online_store_secret)
    return [{"name": "MLOPS_NAMESPACE", "value": owner["metadata"]["namespace"]}, *env] if env else []


def compiled_model(owner: Mapping[str, Any]) -> str:
    """``spec.serving.compiledModel`` (auto | off): whether the server may run a version's ONNX form."""
    return str(((owner.get("spec") or {}).get("serving") or {}).get("compiledModel") or "auto")


def launched_compiled_model(deployment: Mapping[str, Any]) -> str | None:
    """The ``MLOPS_COMPILED_MODEL`` a serving Deployment's pods run with (None: launched before the setting)."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "MLOPS_COMPILED_MODEL" and env.get("value") in ("auto", "off"):
                return env["value"]
    return None


def build_serving_deployment(inp: ServingInput) -> dict[str, Any]:
    deployment = inp.owner["metadata"]["name"]
    prefix = inp.artifact_uri if inp.artifact_uri.endswith("/") else inp.artifact_uri + "/"
    env = {"MLOPS_MODEL": inp.model, "MLOPS_MODEL_VERSION": inp.version, "MLOPS_ROLE": inp.pod_role or inp.role,
           "MLOPS_ARTIFACT_PREFIX": prefix, "MLOPS_COMPILED_MODEL": inp.pod_compiled_model or compiled_model(inp.owner), "HOME": "/tmp"}
    if inp.artifact_sha256:
        env["MLOPS_ARTIFACT_SHA256"] = inp.artifact_sha256
    # The compiled model's threads: the container's CPU limit in whole cores (rounded up; the node's
    # allocatable CPU when there is no limit), so onnxruntime never oversubscribes the pod.
    cpu_limit = {"name": "MLOPS_CPU_LIMIT",
                 "valueFrom": {"resourceFieldRef": {"containerName": "serve", "resource": "limits.cpu", "divisor": "1"}}}
    container: dict[str, Any] = {
        "name": "serve",
        "image": inp.image,
        "imagePullPolicy": inp.image_pull_policy,
        "command": ["mlops-serve"],
        "env": [{"name": k, "value": v} for k, v in env.items()] + [cpu_limit] + s3_env(inp.s3_secret)
               + logging_env(inp) + limits_env(inp.owner) + entity_env(inp.owner),
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", 5, 2),
        "livenessProbe": {**_probe("/v2/health/live", 10, 6), "initialDelaySeconds": 10},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "resources": dict(inp.resources or DEFAULT_SERVING_RESOURCES),
    }
    selector = version_selector(deployment, inp.version)
    pod_labels = {**_labels(inp.owner, inp.model, inp.version, SERVING, inp.pod_role or inp.role), **selector}
    meta = _meta(inp.owner, version_name(deployment, inp.version),
                 {**_labels(inp.owner, inp.model, inp.version, SERVING, inp.role), **selector})
    meta["annotations"] = {VERSION_ANNOTATION: inp.version}
    if inp.companions:
        meta["annotations"][COMPANIONS_ANNOTATION] = ",".join(sorted(inp.companions))
    replicas = {} if inp.replicas is None else {"replicas": inp.replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            **replicas,
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": inp.progress_deadline_seconds,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": dict(PROMETHEUS_ANNOTATIONS)},
                "spec": _pod_spec([container], [], inp.pod, identity=True),
            },
        },
    }


def build_version_service(owner: Mapping[str, Any], model: str, version: str, role: str) -> dict[str, Any]:
    deployment = owner["metadata"]["name"]
    selector = version_selector(deployment, version)
    return _service(owner, version_name(deployment, version), {**_labels(owner, model, version, SERVING, role), **selector},
                    selector)


def build_preview_service(owner: Mapping[str, Any], model: str, version: str) -> dict[str, Any]:
    """The blue/green preview: the candidate's pods, before any production traffic reaches them."""
    deployment = owner["metadata"]["name"]
    return _service(owner, preview_name(deployment), _labels(owner, model, version, SERVING, "preview"),
                    version_selector(deployment, version))


def build_entry_service(owner: Mapping[str, Any], model: str, selector: Mapping[str, str]) -> dict[str, Any]:
    """The Service named after the ModelDeployment (port 8080): the router's pods or stable's pods."""
    deployment = owner["metadata"]["name"]
    return _service(owner, deployment, _labels(owner, model, None, "entry"), dict(selector))


# ----------------------------------------------------------------------------------------------- router


@dataclass(frozen=True)
class RouterInput:
    owner: Mapping[str, Any]
    model: str
    image: str
    replicas: int = 1
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    pod: PodOverrides | None = None     # as the servers', without the service account (see builders.pod)


def build_router_deployment(inp: RouterInput) -> dict[str, Any]:
    deployment = inp.owner["metadata"]["name"]
    name = router_name(deployment)
    selector = router_selector(deployment)
    labels = {**_labels(inp.owner, inp.model, None, ROUTER), **selector}
    container: dict[str, Any] = {
        "name": "route",
        "image": inp.image,
        "imagePullPolicy": inp.image_pull_policy,
        "command": ["mlops-route"],
        "env": [
            {"name": "MLOPS_ROUTER_CONFIG", "value": f"{ROUTER_CONFIG_DIR}/{ROUTER_CONFIG_KEY}"},
            {"name": "MLOPS_MODEL", "value": inp.model},
            {"name": "MLOPS_ROUTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": ROUTER_TOKEN_KEY}}},
            *limits_env(inp.owner, router=True),
        ],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/-/ready", 2, 2),
        "livenessProbe": {**_probe("/-/healthz", 10, 6), "initialDelaySeconds": 5},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "config", "mountPath": ROUTER_CONFIG_DIR, "readOnly": True}],
        "resources": dict(inp.resources or DEFAULT_ROUTER_RESOURCES),
    }
    config_volume = {"name": "config", "configMap": {"name": name, "optional": True,
                                                     "items": [{"key": ROUTER_CONFIG_KEY, "path": ROUTER_CONFIG_KEY}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(inp.owner, name, labels),
        "spec": {
            "replicas": inp.replicas,
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": dict(PROMETHEUS_ANNOTATIONS)},
                "spec": _pod_spec([container], [config_volume], inp.pod, identity=False),
            },
        },
    }


def router_document(routes: Any, *, namespace: str, deployment: str, model: str, generation: int) -> dict[str, Any]:
    """The router's configuration for ``routes`` (``logic.rollout.state.Routes``); format in route_config."""
    def upstream(version: str) -> dict[str, Any]:
        return {"url": version_url(namespace, deployment, version), "version": version}

    doc: dict[str, Any] = {"generation": generation, "model": model, "stable": upstream(routes.stable)}
    if routes.candidate and routes.weight > 0:
        doc["candidate"] = {**upstream(routes.candidate), "weight": routes.weight}
    if routes.shadow and routes.mirror_percent > 0:
        doc["shadow"] = {**upstream(routes.shadow), "percent": routes.mirror_percent}
        tolerance = getattr(routes, "shadow_tolerance", None)
        if tolerance is not None:  # absent: the router's default, so documents without one stay as they were
            doc["shadow"]["tolerance"] = tolerance
    return doc


def build_router_configmap(owner: Mapping[str, Any], model: str, document: Mapping[str, Any]) -> dict[str, Any]:
    name = router_name(owner["metadata"]["name"])
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, name, _labels(owner, model, None, ROUTER)),
        "data": {ROUTER_CONFIG_KEY: json.dumps(document, sort_keys=True, separators=(",", ":"))},
    }


def build_router_secret(owner: Mapping[str, Any], model: str, token: str) -> dict[str, Any]:
    """The admin token of ``PUT /-/config``; generated once by the caller (builders stay pure)."""
    name = router_name(owner["metadata"]["name"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(owner, name, _labels(owner, model, None, ROUTER)),
        "stringData": {ROUTER_TOKEN_KEY: token},
    }


# ------------------------------------------------------------------------------- routes read back by version


def routes_annotation(routes: Any) -> str:
    """``routes`` as the JSON kept in ``mlops.dev/routes`` on objects that name Services, not versions."""
    doc = {"stable": routes.stable, "candidate": routes.candidate, "weight": routes.weight,
           "shadow": routes.shadow, "mirrorPercent": routes.mirror_percent}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def annotated_versions(obj: Mapping[str, Any] | None) -> frozenset[str] | None:
    """Versions an object's ``mlops.dev/routes`` sends traffic or mirrors to.

    An absent object references nothing; an unreadable annotation returns None ("cannot tell"), which
    keeps every version alive.
    """
    if obj is None:
        return frozenset()
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ROUTES_ANNOTATION)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not doc.get("stable"):
        return None
    versions = {doc["stable"]}
    if doc.get("candidate") and (doc.get("weight") or 0) > 0:
        versions.add(doc["candidate"])
    if doc.get("shadow") and (doc.get("mirrorPercent") or 0) > 0:
        versions.add(doc["shadow"])
    return frozenset(versions)
