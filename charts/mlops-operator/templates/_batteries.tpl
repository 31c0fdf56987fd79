{{/* Names, labels and volumes of the batteries (in-cluster MinIO, Prometheus, Alertmanager). */}}

{{- define "mlops-operator.batteries.name" -}}
{{- printf "%s-%s" (include "mlops-operator.fullname" .root) .part | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one battery: a name of its own, so no operator selector ever matches its pods. */}}
{{- define "mlops-operator.batteries.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "mlops-operator.name" .root) .part | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "mlops-operator.batteries.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlops-operator.batteries.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .part }}
app.kubernetes.io/part-of: mlops-operator
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "mlops-operator.batteries.image" -}}
{{- $image := .Values.batteries.image }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "mlops-operator.batteries.s3SecretName" -}}
{{- default (include "mlops-operator.batteries.name" (dict "root" . "part" "minio")) .Values.batteries.minio.existingSecret }}
{{- end }}

{{- define "mlops-operator.batteries.minioURL" -}}
{{- printf "http://%s.%s.svc:9000" (include "mlops-operator.batteries.name" (dict "root" . "part" "minio")) .Release.Namespace }}
{{- end }}

{{- define "mlops-operator.batteries.prometheusURL" -}}
{{- printf "http://%s.%s.svc:9090" (include "mlops-operator.batteries.name" (dict "root" . "part" "prometheus")) .Release.Namespace }}
{{- end }}

{{/* "true" when the batteries keep their data on PVCs: always, never, or (auto) when the cluster has a
default StorageClass. `lookup` sees nothing under `helm template`, so offline renders use emptyDir. */}}
{{- define "mlops-operator.batteries.persistent" -}}
{{- $mode := toString .Values.batteries.persistence }}
{{- if eq $mode "true" }}true
{{- else if eq $mode "auto" }}
{{- range (lookup "storage.k8s.io/v1" "StorageClass" "" "").items }}
{{- if eq (get (.metadata.annotations | default dict) "storageclass.kubernetes.io/is-default-class") "true" }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The data volume of one battery ({root, part}): its PVC, or an emptyDir. */}}
{{- define "mlops-operator.batteries.dataVolume" -}}
- name: data
{{- if include "mlops-operator.batteries.persistent" .root }}
  persistentVolumeClaim:
    claimName: {{ include "mlops-operator.batteries.name" . }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .size }}
{{- end }}
{{- end }}

{{/* The PVC of one battery ({root, part, size}), when persistent. */}}
{{- define "mlops-operator.batteries.pvc" -}}
{{- if include "mlops-operator.batteries.persistent" .root }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "mlops-operator.batteries.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops-operator.batteries.labels" . | nindent 4 }}
  annotations:
    # Data outlives `helm uninstall` only when asked for: delete the PVC by hand to start afresh.
    helm.sh/resource-policy: keep
spec:
  accessModes: [ReadWriteOnce]
  {{- with .root.Values.batteries.storageClassName }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .size }}
---
{{- end }}
{{- end }}

{{/* Pod and container security of every battery: Pod Security "restricted", read-only root, UID 10001. */}}
{{- define "mlops-operator.batteries.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mlops-operator.batteries.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The pod spec fields every battery shares ({root}). */}}
{{- define "mlops-operator.batteries.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "mlops-operator.batteries.podSecurity" . | nindent 2 }}
{{- end }}
