"""The restricted pod shape every builder starts from, and the user's ``pod`` overrides applied to it. Pure.

Every pod the operator creates meets Pod Security "restricted" with a read-only root filesystem. The
overrides (``api.v1alpha1.pod.PodOverrides``, already merged with the operator-wide defaults) add a
service account, pull secrets and placement, and may change ids, SELinux labels and the seccomp type;
nothing they carry can lift the profile (no privilege, no capabilities, runAsNonRoot stays true).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from mlops_operator.api.v1alpha1.pod import ContainerSecurityOverrides, PodOverrides

RUNTIME_UID = 10001
_IDS = ("runAsUser", "runAsGroup", "fsGroup")


def restricted_pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _security_fields(overrides: ContainerSecurityOverrides) -> dict[str, Any]:
    doc = overrides.to_dict()
    doc.pop("omitIds", None)
    return doc


def pod_security(overrides: PodOverrides | None) -> dict[str, Any]:
    """The pod securityContext: restricted, with the overrides' ids, groups, SELinux and seccomp."""
    context = restricted_pod_security()
    wanted = overrides.security_context if overrides else None
    if wanted is None:
        return context
    if wanted.omit_ids:
        for key in _IDS:
            context.pop(key)
    context.update(_security_fields(wanted))
    return context


def container_security(overrides: PodOverrides | None) -> dict[str, Any]:
    """A container securityContext: restricted, with the overrides' ids, SELinux and seccomp."""
    context = restricted_container_security()
    wanted = overrides.container_security_context if overrides else None
    if wanted is not None:
        context.update(_security_fields(wanted))
    return context


def apply_pod_overrides(pod_spec: Mapping[str, Any], overrides: PodOverrides | None, *,
                        identity: bool = True) -> dict[str, Any]:
    """``pod_spec`` with the overrides applied (a new dict; the security contexts are rebuilt).

    ``identity`` False leaves out the service account and its token (the builtin router never needs a
    cloud identity, so it keeps the namespace's default account without a token).
    """
    spec = copy.deepcopy(dict(pod_spec))
    spec["securityContext"] = pod_security(overrides)
    for container in spec.get("containers", []):
        container["securityContext"] = container_security(overrides)
    if overrides is None:
        return spec
    if identity and overrides.service_account_name:
        spec["serviceAccountName"] = overrides.service_account_name
    if identity and overrides.automount_service_account_token is not None:
        spec["automountServiceAccountToken"] = overrides.automount_service_account_token
    optional = {
        "imagePullSecrets": [s.to_dict() for s in overrides.image_pull_secrets or []],
        "nodeSelector": dict(overrides.node_selector or {}),
        "tolerations": [t.to_dict() for t in overrides.tolerations or []],
        "affinity": overrides.affinity.to_dict() if overrides.affinity else {},
        "priorityClassName": overrides.priority_class_name,
    }
    spec.update({key: value for key, value in optional.items() if value})
    return spec
