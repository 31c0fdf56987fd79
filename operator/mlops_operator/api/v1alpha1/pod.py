"""``pod``: how the pods the operator creates are placed and run, one shape for every kind.

The same block appears wherever a resource makes pods (``ModelVersion.spec.training.pod``,
``FeatureSet.spec.materialize.pod``, ``ModelDeployment.spec.serving.pod``, and through their templates
RetrainPolicy and HyperparameterSearch trials), and as the operator-wide defaults of the chart
(``podDefaults``). The field names are those of a core/v1 PodSpec, so a Kubernetes user already knows them.

Only what keeps a pod within Pod Security "restricted" can be set: the security-context overrides may
change the user and group ids (or leave them to the platform, as OpenShift's restricted SCC expects),
the SELinux labels and the seccomp profile type, never privilege, capabilities or the read-only root.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from mlops_operator.api.v1alpha1.common import ApiModel, CelRule
from mlops_operator.api.v1alpha1.primitives import DNS_SUBDOMAIN_PATTERN

# An object passed through as written (its schema is core/v1's, checked when the pod is created).
FreeObject = Annotated[dict[str, Any] | None, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]

MAX_ID = 2**31 - 1
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class SeccompType(StrEnum):
    RUNTIME_DEFAULT = "RuntimeDefault"
    LOCALHOST = "Localhost"


class LocalObjectReference(ApiModel):
    """A Secret in the same namespace, by name."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253, description="Secret name.")


class Toleration(ApiModel):
    """A core/v1 toleration: lets the pods run on nodes with a matching taint."""

    key: str | None = Field(None, max_length=316, pattern=LABEL_KEY_PATTERN,
                            description="Taint key; empty with operator Exists matches every taint.")
    operator: TolerationOperator = Field(TolerationOperator.EQUAL, description="Equal (default) or Exists.")
    value: str | None = Field(None, max_length=63, description="Taint value (operator Equal).")
    effect: TaintEffect | None = Field(None, description="NoSchedule, PreferNoSchedule or NoExecute; empty = all.")
    toleration_seconds: int | None = Field(
        None, ge=0, description="How long a NoExecute taint is tolerated before eviction.")

    cel_rules = (
        CelRule("!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                "value must be empty when operator is Exists",
                lambda t: t.operator != "Exists" or t.value is None, field_path=".value"),
        CelRule("has(self.key) || (has(self.operator) && self.operator == 'Exists')",
                "key is required unless operator is Exists",
                lambda t: t.key is not None or t.operator == "Exists", field_path=".key"),
        CelRule("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds applies only with effect NoExecute",
                lambda t: t.toleration_seconds is None or t.effect == "NoExecute", field_path=".tolerationSeconds"),
    )


class Affinity(ApiModel):
    """core/v1 affinity; each part is passed to the pod as written (the apiserver checks it there)."""

    node_affinity: FreeObject = Field(None, description="core/v1 NodeAffinity.")
    pod_affinity: FreeObject = Field(None, description="core/v1 PodAffinity.")
    pod_anti_affinity: FreeObject = Field(None, description="core/v1 PodAntiAffinity.")


class SELinuxOptions(ApiModel):
    """SELinux labels of the containers."""

    user: str | None = Field(None, max_length=253, description="SELinux user label.")
    role: str | None = Field(None, max_length=253, description="SELinux role label.")
    type: str | None = Field(None, max_length=253, description="SELinux type label.")
    level: str | None = Field(None, max_length=253, description="SELinux level label.")


class SeccompProfile(ApiModel):
    """The seccomp profile; "restricted" allows only RuntimeDefault and Localhost."""

    type: SeccompType = Field(description="RuntimeDefault or Localhost.")
    localhost_profile: str | None = Field(
        None, min_length=1, max_length=4096, description="Profile file on the node (type Localhost).")

    cel_rules = (
        CelRule("has(self.localhostProfile) == (self.type == 'Localhost')",
                "localhostProfile is required with type Localhost and not allowed otherwise",
                lambda s: (s.localhost_profile is not None) == (s.type == "Localhost"),
                field_path=".localhostProfile"),
    )


class ContainerSecurityOverrides(ApiModel):
    """What a container's securityContext may change; privilege, capabilities and the root stay locked."""

    run_as_user: int | None = Field(None, ge=1, le=MAX_ID, description="User id (never 0).")
    run_as_group: int | None = Field(None, ge=0, le=MAX_ID, description="Primary group id.")
    se_linux_options: SELinuxOptions | None = Field(None, description="SELinux labels.")
    seccomp_profile: SeccompProfile | None = Field(None, description="Seccomp profile.")


class PodSecurityOverrides(ContainerSecurityOverrides):
    """What the pod securityContext may change. By default pods run as user, group and fsGroup 10001."""

    fs_group: int | None = Field(None, ge=0, le=MAX_ID, description="Group that owns the pod's volumes.")
    supplemental_groups: list[int] | None = Field(
        None, max_length=16, description="Extra group ids of every container.")
    omit_ids: bool = Field(
        False, description=("Leave runAsUser, runAsGroup and fsGroup unset so the platform assigns them (OpenShift's "
                            "restricted SCC gives each namespace its own UID range); runAsNonRoot stays true."))

    cel_rules = (
        CelRule("!has(self.omitIds) || !self.omitIds || (!has(self.runAsUser) && !has(self.runAsGroup) && "
                "!has(self.fsGroup))",
                "runAsUser, runAsGroup and fsGroup cannot be set together with omitIds",
                lambda s: not s.omit_ids or (s.run_as_user is None and s.run_as_group is None and s.fs_group is None),
                field_path=".omitIds"),
    )


class PodOverrides(ApiModel):
    """Placement, identity and security settings of the pods created for this resource.

    Each field set here replaces the operator-wide default (chart value ``podDefaults``) of the same
    name; ``nodeSelector`` and the security contexts merge key by key, this resource's keys winning.
    """

    service_account_name: str | None = Field(
        None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253,
        description=("ServiceAccount the pods run as (e.g. one bound to a cloud IAM role through IRSA or workload "
                     "identity). The pods still get no API token unless automountServiceAccountToken is true."),
    )
    automount_service_account_token: bool | None = Field(
        None, description="Mount the ServiceAccount's API token (false when absent: the pods never call the apiserver).")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=8, description="Secrets for pulling the runtime image from a private registry.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    node_selector: dict[str, str] | None = Field(None, max_length=32, description="Node labels the pods require.")
    tolerations: list[Toleration] | None = Field(None, max_length=32, description="Taints the pods tolerate.")
    affinity: Affinity | None = Field(None, description="Node and pod (anti-)affinity.")
    priority_class_name: str | None = Field(
        None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="PriorityClass of the pods.")
    security_context: PodSecurityOverrides | None = Field(None, description="Pod security-context overrides.")
    container_security_context: ContainerSecurityOverrides | None = Field(
        None, description="Security-context overrides of the container.")


def parse_pod_defaults(text: str) -> PodOverrides | None:
    """The operator-wide defaults from their JSON (``MLOPS_POD_DEFAULTS``); None when empty."""
    text = text.strip()
    return PodOverrides.model_validate_json(text) if text and text != "{}" else None


_MERGED_BY_KEY = ("node_selector", "security_context", "container_security_context")
_IDS = ("run_as_user", "run_as_group", "fs_group", "omit_ids")


def _merge_key(name: str, base: Any, value: Any) -> Any:
    if name not in _MERGED_BY_KEY or not base or value is None:
        return value
    if name == "security_context" and any(k in value for k in _IDS):
        base = {k: v for k, v in base.items() if k not in _IDS}  # ids come from one place, never mixed
    return {**base, **value}


def merge_pod_overrides(defaults: PodOverrides | None, own: PodOverrides | None) -> PodOverrides | None:
    """``own`` over ``defaults``: a field set in ``own`` wins; mappings and security contexts merge by key.

    The ids of the pod security context (runAsUser, runAsGroup, fsGroup, omitIds) are taken as a group:
    when ``own`` names any of them, none of the defaults' apply.

    >>> merge_pod_overrides(PodOverrides(node_selector={"a": "1", "b": "1"}, priority_class_name="low"),
    ...                     PodOverrides(node_selector={"b": "2"})).to_dict()
    {'nodeSelector': {'a': '1', 'b': '2'}, 'priorityClassName': 'low'}
    """
    if defaults is None or own is None:
        return own or defaults
    merged: dict[str, Any] = defaults.model_dump(exclude_unset=True, by_alias=False)
    for name, value in own.model_dump(exclude_unset=True, by_alias=False).items():
        merged[name] = _merge_key(name, merged.get(name), value)
    return PodOverrides.model_validate(merged)
