{{/* Names and labels shared by every template. */}}

{{- define "mlops-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; a release called "mlops-operator" yields plain "mlops-operator" (as kustomize). */}}
{{- define "mlops-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlops-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlops-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlops-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mlops-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mlops-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mlops-operator.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) }}
{{- end }}

{{- define "mlops-operator.s3SecretName" -}}
{{- default (printf "%s-s3" (include "mlops-operator.fullname" .)) .Values.s3.existingSecret }}
{{- end }}

{{- define "mlops-operator.alertTokenSecretName" -}}
{{- default (printf "%s-alert-token" (include "mlops-operator.fullname" .)) .Values.alerts.existingSecret }}
{{- end }}

{{/* True (non-empty) when the operator pod must get S3 credentials from the Secret. */}}
{{- define "mlops-operator.s3HasCredentials" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKeyId }}true{{ end }}
{{- end }}

{{/*
Namespace-scoped permissions of the operator, shared by the ClusterRole (cluster-wide mode) and the
per-namespace Roles (rbac.namespaced) so the two can never drift apart. Exactly the verbs used.
*/}}
{{- define "mlops-operator.namespacedRules" -}}
# The five mlops.dev kinds: kopf watches them, patches them (finalizers, its progress annotations) and
# writes status. `update` on */finalizers is what lets child objects set blockOwnerDeletion on their
# ownerReference to a custom resource (OwnerReferencesPermissionEnforcement).
- apiGroups: [mlops.dev]
  resources: [featuresets, modelversions, modeldeployments, retrainpolicies, hyperparametersearches]
  verbs: [get, list, watch, patch, update]
- apiGroups: [mlops.dev]
  resources: [featuresets/status, modelversions/status, modeldeployments/status, retrainpolicies/status, hyperparametersearches/status]
  verbs: [get, patch, update]
- apiGroups: [mlops.dev]
  resources: [featuresets/finalizers, modelversions/finalizers, modeldeployments/finalizers, retrainpolicies/finalizers, hyperparametersearches/finalizers]
  verbs: [update]
# RetrainPolicies create the ModelVersions they train (deterministic names: AlreadyExists is success).
# The /alerts webhook needs nothing more: it lists/gets retrainpolicies and patches their status (above).
- apiGroups: [mlops.dev]
  resources: [modelversions]
  verbs: [create]
# Events on the custom resources (kopf posts core/v1 events; newer clients use events.k8s.io).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Training, materialization and trial Jobs: created with deterministic names, watched for completion,
# deleted on cleanup / abort (patch: adopting or relabelling an existing child idempotently).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete, patch]
# Pods of those Jobs and of model servers: failure reasons (OOMKilled, ImagePullBackOff) for conditions,
# and the tail of a failed training pod's log for the condition message. Read-only.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Serving: model server / router Deployments, their Services, router configuration in ConfigMaps.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
# Secrets: `get` by name, to report a clear condition when the S3 Secret a workload needs is missing,
# and `create` for the one admin-token Secret per ModelDeployment router (deterministic name, created
# once). Never list/watch: the operator must not be able to read every Secret in the cluster.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
{{- if .Values.rbac.gatewayAPI }}
# traffic.router=gatewayAPI: weighted HTTPRoute backends for canary / blue-green.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, create, patch]  # server-side apply; owner references let the GC delete them
{{- end }}
{{- if .Values.rbac.kserve }}
# serving.runtime=kserve / traffic.router=kserve: InferenceServices with canaryTrafficPercent.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, create, patch]  # server-side apply; owner references let the GC delete them
{{- end }}
{{- end }}

{{/* Cluster-scoped permissions: needed in both RBAC modes. */}}
{{- define "mlops-operator.clusterRules" -}}
# kopf scans CRDs to discover the served versions of the mlops.dev kinds (and its own peering kinds).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- if not .Values.rbac.namespaced }}
# kopf follows namespaces appearing / disappearing to serve namespace globs in MLOPS_NAMESPACES.
# (In rbac.namespaced mode the names are exact and kopf uses them as given: not needed there.)
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
