"""Pod Security "restricted" as this project reads it, shared by the unit tests of the pod builders and the
chart tier's rendered manifests (every pod the operator or the chart creates must pass it)."""

from __future__ import annotations

from typing import Any


def assert_restricted(pod_spec: dict[str, Any]) -> None:
    """Pod Security "restricted" plus read-only root filesystem and a writable /tmp emptyDir."""
    assert not any(pod_spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    assert not any("hostPath" in volume for volume in pod_spec.get("volumes", []))
    pod_ctx = pod_spec.get("securityContext", {})
    emptydirs = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
    for container in pod_spec["containers"] + pod_spec.get("initContainers", []):
        ctx = {**pod_ctx, **container.get("securityContext", {})}
        name = container["name"]
        assert ctx.get("runAsNonRoot") is True, name
        assert ctx.get("runAsUser", 0) != 0, name
        assert container["securityContext"].get("allowPrivilegeEscalation") is False, name
        assert container["securityContext"].get("readOnlyRootFilesystem") is True, name
        assert container["securityContext"].get("privileged", False) is False, name
        assert container["securityContext"].get("capabilities", {}).get("drop") == ["ALL"], name
        assert not container["securityContext"].get("capabilities", {}).get("add"), name
        assert ctx.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), name
        assert {m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"} & emptydirs, name
        assert container["resources"].get("requests") and container["resources"].get("limits"), name
