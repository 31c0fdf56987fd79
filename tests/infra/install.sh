#!/usr/bin/env bash
# `make install`: the Helm chart into the current cluster. On the local cluster (.local/env sourced) the
# S3 settings come from MinIO's credentials as a Secret (never on the command line), images are the
# locally imported ones (pullPolicy Never), the alert token is the one Alertmanager sends and the Service has
# the fixed ClusterIP Alertmanager sends to.
source "$(dirname "$0")/lib.sh"
need helm "Run 'make cluster-up' (it builds helm into $TOOLS_BIN) or install helm 3."
need kubectl "Run 'make cluster-up' or install kubectl."
NAMESPACE="${NAMESPACE:-mlops-system}"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-localhost/mlops-runtime:dev}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-localhost/mlops-operator:dev}"
T0=$(date +%s)

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE" >/dev/null
kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null

args=(--namespace "$NAMESPACE"
      --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}"
      --set runtimeImage.repository="${RUNTIME_IMAGE%:*}" --set runtimeImage.tag="${RUNTIME_IMAGE##*:}")
if [ -n "${S3_ENDPOINT_URL:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
  # Secrets from files/stdin only: credentials never appear in argv or logs.
  kubectl -n "$NAMESPACE" create secret generic mlops-operator-s3 --dry-run=client -o yaml \
    --from-env-file=<(printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nS3_ENDPOINT_URL=%s\nS3_BUCKET=%s\nAWS_REGION=%s\n' \
        "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$S3_ENDPOINT_URL" "${S3_BUCKET:-mlops}" "${AWS_REGION:-us-east-1}") \
    | kubectl apply -f - >/dev/null
  args+=(--set s3.existingSecret=mlops-operator-s3 --set image.pullPolicy=Never)
fi
if [ -n "${ALERT_WEBHOOK_TOKEN_FILE:-}" ] && [ -f "$ALERT_WEBHOOK_TOKEN_FILE" ]; then
  kubectl -n "$NAMESPACE" create secret generic mlops-operator-alert-token --dry-run=client -o yaml \
    --from-file=token="$ALERT_WEBHOOK_TOKEN_FILE" | kubectl apply -f - >/dev/null
  args+=(--set alerts.existingSecret=mlops-operator-alert-token)
fi
if [ "${KUBECONFIG:-}" = "$PKI_DIR/admin.kubeconfig" ]; then
  # The local cluster: the host-run Alertmanager posts to this fixed ClusterIP (cluster-up.sh). A Service's
  # clusterIP is immutable, so one installed earlier with an allocated address is replaced (nothing else
  # refers to the Service object; the pod keeps running).
  current=$(kubectl -n "$NAMESPACE" get service mlops-operator -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  if [ -n "$current" ] && [ "$current" != "$OPERATOR_SERVICE_IP" ]; then
    log "install: moving Service mlops-operator from $current to $OPERATOR_SERVICE_IP"
    kubectl -n "$NAMESPACE" delete service mlops-operator --wait=true >/dev/null
  fi
  args+=(--set service.clusterIP="$OPERATOR_SERVICE_IP")
fi
if [ -n "${SERVING_S3_SECRET:-}" ]; then
  # Model servers read S3 with this Secret (e.g. MinIO's read-only user) instead of the Jobs' read-write
  # mlops-s3. Opt-in: every namespace that serves must then hold it (the e2e fixtures create
  # mlops-s3-readonly from .local/env's S3_READONLY_* keys). Unset = the chart default, the same Secret.
  args+=(--set serving.s3SecretName="$SERVING_S3_SECRET")
fi
if [ -n "${REDIS_URL:-}" ]; then
  # The local cluster's Redis: the online feature store (its password reaches pods through the mlops-redis
  # Secret of each namespace, which the e2e fixtures create from .local/env).
  args+=(--set onlineStore.url="$REDIS_URL")
fi
extra=0  # the next free index of the chart's extraEnv list
if [ -n "${PROMETHEUS_URL:-}" ]; then
  args+=(--set "extraEnv[$extra].name=MLOPS_PROMETHEUS_URL" --set "extraEnv[$extra].value=$PROMETHEUS_URL")
  extra=$((extra + 1))
fi
if [ -n "${MLOPS_RECONCILE_INTERVAL:-}" ]; then
  # Seconds between the timer passes over each object (the operator's default: 10). The e2e tier sets a
  # shorter one, so a flow waits less for the pass that notices a finished Job or an elapsed pause.
  args+=(--set "extraEnv[$extra].name=MLOPS_RECONCILE_INTERVAL" --set-string "extraEnv[$extra].value=$MLOPS_RECONCILE_INTERVAL")
  extra=$((extra + 1))
fi
log "install: helm upgrade --install mlops-operator charts/mlops-operator -n $NAMESPACE"
helm upgrade --install mlops-operator "$REPO_ROOT/charts/mlops-operator" "${args[@]}" --wait --timeout 5m \
  || die "helm install failed; inspect: kubectl -n $NAMESPACE describe deploy,pods; kubectl -n $NAMESPACE logs deploy/mlops-operator"
# Helm installs crds/ only on first install; keep them current on upgrades (GitOps users apply crds/ too).
kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/crds/" >/dev/null
log "install: done in $(( $(date +%s) - T0 ))s"
