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
{{- if or .Values.s3.existingSecret .Values.s3.accessKeyId .Values.batteries.enabled }}true{{ end }}
{{- end }}

{{/*
Namespace-scoped permissions of the operator, shared by the ClusterRole (cluster-wide mode) and the
per-namespace Roles (rbac.namespaced) so the two can never drift apart. Exactly the verbs the code uses
(tests/unit/test_chart_rbac.py pins this rule set: a new verb is a conscious change). Server-side apply is
a PATCH, and one that creates the object is also authorized as `create`: applied kinds need both.
*/}}
{{- define "mlops-operator.namespacedRules" -}}
# The six mlops.dev kinds. list/watch: kopf's watches. patch: kopf's finalizer and its progress and
# last-handled annotations; a HyperparameterSearch moving the mlops.dev/best-of label between trials.
# get: a pass re-reads its object after a conflicting status write, and reads the objects a spec names.
- apiGroups: [mlops.dev]
  resources: [featuresets, modelversions, modeldeployments, retrainpolicies, hyperparametersearches, batchpredictions]
  verbs: [get, list, watch, patch]
# Status is only ever merge-patched (with resourceVersion when optimistic); reads go to the object itself.
- apiGroups: [mlops.dev]
  resources: [featuresets/status, modelversions/status, modeldeployments/status, retrainpolicies/status, hyperparametersearches/status, batchpredictions/status]
  verbs: [patch]
# Children carry blockOwnerDeletion on their controller ownerReference, which OwnerReferencesPermissionEnforcement
# allows only with `update` on the owner's finalizers: ModelVersion (training Job), FeatureSet (materialize
# Job), ModelDeployment (serving objects), BatchPrediction (scoring Job). Trials and retrained versions are
# labelled, not owned.
- apiGroups: [mlops.dev]
  resources: [featuresets/finalizers, modelversions/finalizers, modeldeployments/finalizers, batchpredictions/finalizers]
  verbs: [update]
# RetrainPolicies and HyperparameterSearches create the ModelVersions they train (deterministic names:
# AlreadyExists is success). The /alerts webhook needs nothing more: it lists/gets retrainpolicies and
# patches their status (above).
- apiGroups: [mlops.dev]
  resources: [modelversions]
  verbs: [create]
# Events on the custom resources: kopf posts core/v1 Events, each a new one (never patched or aggregated).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Training and materialize Jobs: created once under a deterministic name (AlreadyExists = ours), then read
# by name for their outcome. Never listed, watched, patched or deleted: owner references garbage-collect them
# (and jobs.ttlSecondsAfterFinished, when set, lets Kubernetes delete finished ones).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create]
# Pods are only listed, by label: a failed Job's pods (exit code, termination message, OOMKilled) and the
# builtin router's replicas (their IPs, to push routes and scrape counters). Never read singly or changed.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Serving and router Deployments: server-side applied (patch + create), listed by label to see which
# versions run, read by name (the router's readiness), deleted when a version is retired.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, create, patch, delete]
# serving.autoscaling / serving.podDisruptionBudget: the HorizontalPodAutoscaler and PodDisruptionBudget
# beside the servers, server-side applied (patch + create) and deleted when the spec drops them; never read.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch, delete]
# Entry, per-version and preview Services: applied, read by name (the service router's selector), deleted
# with their version or when a blue/green preview ends.
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch, delete]
# The builtin router's ConfigMap (the routing document): applied and read back by name; the garbage
# collector deletes it with its ModelDeployment.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
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
  verbs: [get, create, patch]  # server-side apply and read-back; owner references let the GC delete them
{{- end }}
{{- if .Values.rbac.kserve }}
# serving.runtime=kserve / traffic.router=kserve: InferenceServices with canaryTrafficPercent.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, create, patch]  # server-side apply and read-back; owner references let the GC delete them
{{- end }}
{{- end }}

{{/*
Leader election, in the release namespace only (a Role): the Lease is created once (create cannot be
limited by name), then read and renewed by name (get, update: a PUT with resourceVersion, so two replicas
can never both take it); never listed, watched or deleted. pods patch: the leader puts the label
mlops.dev/leader=true on its own pod (the Service selects it) and a restarted replica removes it.
*/}}
{{- define "mlops-operator.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ .Values.leaderElection.leaseName }}]
  verbs: [get, update]
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}

{{/* Cluster-scoped permissions: needed in both RBAC modes. */}}
{{- define "mlops-operator.clusterRules" -}}
# kopf finds the mlops.dev kinds by API discovery, then follows CRDs being added or removed (list/watch).
# No kopf peering resources: Kopf runs standalone; replicas elect a leader on a Lease (Role below).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if and (not .Values.rbac.namespaced) .Values.watchNamespaces }}
# kopf follows namespaces appearing / disappearing to serve the namespace globs in MLOPS_NAMESPACES. Not
# needed when watching all namespaces (one cluster-wide watch per kind), nor in rbac.namespaced mode
# (exact names, used as given).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
