"""Narrow async access to the Kubernetes API: the only module that talks to the apiserver directly.

Why raw JSON requests through the official client's ``ApiClient``: the generated typed methods validate
and (de)serialise every object through models, which costs time and turns dict manifests from the pure
builders into a translation problem. Here bodies go out and come back as plain ``dict``s, exactly the
shape builders produce and the logic reads. The sync client runs in a worker thread
(``asyncio.to_thread``) so the event loop (Kopf's watches and timers) never blocks.

The idempotent outcomes are not errors: ``409 AlreadyExists`` on create returns the existing object,
``404`` on delete is success, ``404`` on read is ``None``. What remains is mapped onto four exceptions the
handlers act on differently: ``Forbidden`` (a condition, retried slowly: RBAC may be fixed),
``Conflict`` (re-read and retry), ``Unavailable`` (back off) and ``Invalid`` (a bug or a schema
mismatch: report, don't hammer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from typing import Any, Mapping
from urllib.parse import quote

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

GROUP = "mlops.dev"
VERSION = "v1alpha1"
_TIMEOUT = (5, 30)  # (connect, read) seconds: a hung apiserver must not hang a reconcile pass
_MERGE_PATCH = "application/merge-patch+json"

_lock = threading.Lock()
_client: ApiClient | None = None


class KubeError(Exception):
    """Base of the API failures callers handle; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Forbidden(KubeError):
    """401/403: the operator's identity may not do this. Recovers when RBAC is restored."""


class Conflict(KubeError):
    """409 on a write with a stale resourceVersion: re-read the object and decide again."""


class Unavailable(KubeError):
    """The apiserver is unreachable, overloaded (429) or failing (5xx): back off and retry."""


class Invalid(KubeError):
    """400/422: the request itself is wrong (a bug, or a CRD older than the operator)."""


def _api() -> ApiClient:
    """One shared client: in-cluster service account, else the local kubeconfig (KUBECONFIG)."""
    global _client
    with _lock:
        if _client is None:
            cfg = Configuration()
            try:
                kube_config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                # Explicit path: the library's default is frozen when it is first imported.
                kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
            _client = ApiClient(cfg)
        return _client


def _message(exc: ApiException) -> str:
    """The apiserver's own explanation (Status.message) rather than the whole response dump."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


SCHEMA_MISMATCH = "field not declared in schema"


def _translate(exc: Exception, what: str) -> KubeError:
    if isinstance(exc, ApiException):
        status, text = exc.status, f"{what}: {_message(exc)}"
        if status in (401, 403):
            return Forbidden(text, status)
        if status == 409:
            return Conflict(text, status)
        if status in (400, 422) or (status == 500 and SCHEMA_MISMATCH in text):
            return Invalid(text, status)  # server-side apply answers 500 for a field the schema lacks
        return Unavailable(text, status)
    return Unavailable(f"{what}: apiserver unreachable ({type(exc).__name__})")


def _request_sync(method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                  body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
    api = _api()
    headers = {"Accept": "application/json", "Content-Type": content_type}
    request = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                  header_params=headers, body=body, auth_settings=["BearerToken"])
    response = api.call_api(*request, _request_timeout=_TIMEOUT)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=response.data.decode(errors="replace"),
                                         data=None)
    return json.loads(response.data or b"{}")


async def request(method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                  body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
    """One API call off the event loop; failures come back as ``KubeError`` subclasses."""
    try:
        return await asyncio.to_thread(_request_sync, method, path, query=query, body=body,
                                       content_type=content_type)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _translate(exc, f"{method} {path}") from exc


# ------------------------------------------------------------------------------------------ paths


def _q(part: str) -> str:
    return quote(part, safe="")


def custom_path(plural: str, namespace: str, name: str | None = None, *, subresource: str | None = None,
                group: str = GROUP, version: str = VERSION) -> str:
    path = f"/apis/{group}/{version}/namespaces/{_q(namespace)}/{plural}"
    if name is not None:
        path += f"/{_q(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def job_path(namespace: str, name: str | None = None) -> str:
    return f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs" + (f"/{_q(name)}" if name else "")


def core_path(plural: str, namespace: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{_q(namespace)}/{plural}" + (f"/{_q(name)}" if name else "")


# ---------------------------------------------------------------------------- idempotent verbs


async def get(path: str) -> dict[str, Any] | None:
    """The object at ``path``, or ``None`` when it does not exist."""
    try:
        return await request("GET", path)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def selector(labels: Mapping[str, str]) -> str:
    """A label selector matching every one of ``labels`` (``a=1,b=2``)."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


async def list_items(path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
    query = [("labelSelector", label_selector)] if label_selector else None
    try:
        return list((await request("GET", path, query=query)).get("items") or [])
    except KubeError as exc:
        if exc.status == 404:  # the resource type itself is absent (e.g. a CRD not installed yet)
            return []
        raise


async def create(path: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create ``body`` under ``path``; ``(object, created)``. AlreadyExists returns the existing one."""
    try:
        return await request("POST", path, body=dict(body)), True
    except Conflict:
        existing = await get(f"{path}/{_q(body['metadata']['name'])}")
        if existing is None:  # deleted between our POST and GET: let the next pass create it
            raise Unavailable(f"POST {path}: exists but vanished while being read", 409)
        return existing, False


async def delete(path: str, *, propagation: str = "Background", uid: str | None = None) -> None:
    """Delete the object at ``path``; already gone is success. With ``uid``, only that very object: one
    re-created under the same name meanwhile is left alone (the precondition fails: 409, also success)."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        await request("DELETE", path, body=body)
    except KubeError as exc:
        if exc.status == 404 or (uid and exc.status == 409):
            return
        raise


async def patch_status(plural: str, namespace: str, name: str, status: Mapping[str, Any], *,
                       resource_version: str | None = None) -> dict[str, Any]:
    """Merge-patch ``status`` of a custom resource; return the updated object.

    With ``resource_version`` the write is optimistic: if anyone changed the object since it was read,
    the apiserver answers 409 and ``Conflict`` is raised, so a decision taken on stale state is never
    written over a newer one.
    """
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return await request("PATCH", custom_path(plural, namespace, name, subresource="status"),
                         body=body, content_type=_MERGE_PATCH)


async def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await get(custom_path(plural, namespace, name))


async def patch_metadata(plural: str, namespace: str, name: str, *, labels: Mapping[str, Any] | None = None,
                         annotations: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Merge-patch one object's labels and/or annotations (a None value removes that key); never its spec."""
    meta: dict[str, Any] = {}
    if labels is not None:
        meta["labels"] = dict(labels)
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return await request("PATCH", custom_path(plural, namespace, name), body={"metadata": meta},
                         content_type=_MERGE_PATCH)


async def list_custom(plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
    return await list_items(custom_path(plural, namespace), label_selector)


async def create_job(namespace: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    return await create(job_path(namespace), body)


async def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    return await get(job_path(namespace, name))


async def list_pods(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    return await list_items(core_path("pods", namespace), label_selector)


async def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's data, base64-decoded; ``None`` when absent. Values are credentials: never log them."""
    secret = await get(core_path("secrets", namespace, name))
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


# ------------------------------------------------------------------------------ whole manifests, by kind

FIELD_MANAGER = "mlops-operator"
_APPLY_PATCH = "application/apply-patch+yaml"
_PLURALS = {
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("apps/v1", "Deployment"): "deployments",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices",
}


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The API path of a kind the operator builds (``apiVersion`` + ``kind`` → plural)."""
    plural = _PLURALS[(api_version, kind)]
    if "/" not in api_version:
        return core_path(plural, namespace, name)
    group, version = api_version.split("/", 1)
    return custom_path(plural, namespace, name, group=group, version=version)


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


async def apply_object(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply ``obj`` with a fixed field manager (this operator by default): an idempotent
    create-or-update of a whole manifest, so a pass repeated after a crash converges on the same object."""
    return await request("PATCH", object_path(obj), body=dict(obj), content_type=_APPLY_PATCH,
                         query=[("fieldManager", manager), ("force", "true")])


async def get_object(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await get(resource_path(api_version, kind, namespace, name))
