#!/usr/bin/env bash
# Brings up the local cluster: etcd, kube-apiserver, controller-manager, scheduler, MinIO, versitygw,
# Prometheus, Alertmanager, CoreDNS and a node (containerd + kubelet + kube-proxy + bridge CNI).
# Idempotent: running it twice is harmless. Writes .local/env. MLOPS_NODE=0 skips the node (control
# plane + services only).
source "$(dirname "$0")/lib.sh"
INFRA="$REPO_ROOT/tests/infra"
T0=$(date +%s)
[ "$(id -u)" -eq 0 ] || die "cluster-up needs root (it manages a node: containerd, kubelet, iptables)."

# A failed start must not leave orphans: stop everything this run started.
STARTED=()
cleanup_on_error() {
  local rc=$?
  if [ $rc -ne 0 ] && [ ${#STARTED[@]} -gt 0 ]; then
    log "cluster-up failed; stopping what this run started: ${STARTED[*]}"
    for ((i=${#STARTED[@]}-1; i>=0; i--)); do stop "${STARTED[$i]}"; done
  fi
}
trap cleanup_on_error EXIT
launch() { local name="$1"; is_running "$name" || STARTED+=("$name"); start "$@"; }

"$INFRA/install-deps.sh"
"$INFRA/build-binaries.sh" all
"$INFRA/pki.sh"
export PATH="$K8S_BIN:$TOOLS_BIN:$PATH"
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
NODE_ENABLED="${MLOPS_NODE:-1}"

"$INFRA/node-net.sh" up
KC_ADMIN="$PKI_DIR/admin.kubeconfig"
kadmin() { kubectl --kubeconfig "$KC_ADMIN" "$@"; }

# --- etcd ---------------------------------------------------------------------------------------------
port_free_or_ours etcd 127.0.0.1 $ETCD_PORT
launch etcd etcd --name mlops --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "mlops=http://127.0.0.1:$ETCD_PEER_PORT" --quota-backend-bytes 2147483648
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver -------------------------------------------------------------------------------------
port_free_or_ours kube-apiserver "$NODE_IP" $APISERVER_PORT
launch kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port $APISERVER_PORT \
  --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --client-ca-file "$PKI_DIR/ca.crt" \
  --tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
  --kubelet-client-certificate "$PKI_DIR/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI_DIR/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI_DIR/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI_DIR/sa.pub" --service-account-signing-key-file "$PKI_DIR/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --profiling=false --v=1
apiserver_ready() {
  curl -fsS --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://$NODE_IP:$APISERVER_PORT/readyz" | grep -q '^ok$'
}
wait_for kube-apiserver 90 apiserver_ready
kadmin apply -f "$INFRA/manifests/bootstrap.yaml" >/dev/null

# --- controller-manager, scheduler -------------------------------------------------------------------------
launch kube-controller-manager kube-controller-manager \
  --kubeconfig "$PKI_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$PKI_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$PKI_DIR/controller-manager.kubeconfig" \
  --service-account-private-key-file "$PKI_DIR/sa.key" --root-ca-file "$PKI_DIR/ca.crt" \
  --cluster-signing-cert-file "$PKI_DIR/ca.crt" --cluster-signing-key-file "$PKI_DIR/ca.key" \
  --use-service-account-credentials=true --leader-elect=false --bind-address 127.0.0.1 \
  --service-cluster-ip-range "$SERVICE_CIDR" --cluster-name mlops-local --profiling=false --v=1
launch kube-scheduler kube-scheduler \
  --kubeconfig "$PKI_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$PKI_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$PKI_DIR/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --profiling=false --v=1
wait_for kube-controller-manager 60 curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 curl -fsSk https://127.0.0.1:10259/healthz

# --- MinIO -----------------------------------------------------------------------------------------------
S3_CREDS="$LOCAL_DIR/s3-credentials"
if [ ! -f "$S3_CREDS" ]; then
  ( umask 077; printf 'AWS_ACCESS_KEY_ID=mlops%s\nAWS_SECRET_ACCESS_KEY=%s\n' \
      "$(openssl rand -hex 4)" "$(openssl rand -hex 20)" > "$S3_CREDS" )
fi
# shellcheck disable=SC1090
source "$S3_CREDS"
S3_BUCKET="${S3_BUCKET:-mlops}"
S3_ENDPOINT_URL="http://$NODE_IP:$MINIO_PORT"
port_free_or_ours minio "$NODE_IP" $MINIO_PORT
launch minio env MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
  MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
  minio server --quiet --address "$NODE_IP:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" "$STATE_DIR/minio"
wait_for minio 60 curl -fsS "$S3_ENDPOINT_URL/minio/health/ready"
s3_curl() { curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
s3_curl -o /dev/null "$S3_ENDPOINT_URL/$S3_BUCKET/" 2>/dev/null \
  || s3_curl -X PUT -o /dev/null "$S3_ENDPOINT_URL/$S3_BUCKET/" || die "minio: creating bucket $S3_BUCKET failed (log: $LOG_DIR/minio.log)"
# A user that can only read the bucket: what model-server pods get (serving.s3SecretName, docs/install.md).
# MinIO's admin API (user creation is encrypted with the admin secret) through the `minio` Python package.
S3_RO_CREDS="$LOCAL_DIR/s3-readonly-credentials"
if [ ! -f "$S3_RO_CREDS" ]; then
  ( umask 077; printf 'S3_READONLY_ACCESS_KEY_ID=mlopsro%s\nS3_READONLY_SECRET_ACCESS_KEY=%s\n' \
      "$(openssl rand -hex 4)" "$(openssl rand -hex 20)" > "$S3_RO_CREDS" )
fi
MINIO_PY_VERSION="${MINIO_PY_VERSION:-7.2.20}"
MINIO_ADMIN_VENV="$CACHE_DIR/tools/minio-admin-venv"
if ! "$MINIO_ADMIN_VENV/bin/python" -c "import minio, sys; sys.exit(minio.__version__ != '$MINIO_PY_VERSION')" 2>/dev/null; then
  log "minio: admin client minio==$MINIO_PY_VERSION (PyPI) into $MINIO_ADMIN_VENV"
  python3 -m venv "$MINIO_ADMIN_VENV" && "$MINIO_ADMIN_VENV/bin/pip" install -q "minio==$MINIO_PY_VERSION" \
    || die "minio: installing the Python admin client failed"
fi
AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  "$MINIO_ADMIN_VENV/bin/python" "$INFRA/minio_readonly.py" "$S3_ENDPOINT_URL" "$S3_BUCKET" "$S3_RO_CREDS" \
  || die "minio: creating the read-only user failed (log: $LOG_DIR/minio.log)"
# shellcheck disable=SC1090
source "$S3_RO_CREDS"

# --- versitygw: the second S3 server (storage-contract tests against two implementations; docs/storage.md)
is_running versitygw || STARTED+=(versitygw)
"$INFRA/s3-alt.sh" up
# shellcheck disable=SC1090
source "$LOCAL_DIR/s3-alt-credentials"

# --- Redis: the online feature store (docs/features.md) ---------------------------------------------------
is_running redis || STARTED+=(redis)
"$INFRA/redis.sh" up
# shellcheck disable=SC1090
source "$LOCAL_DIR/redis-credentials"

# --- Alertmanager, Prometheus ------------------------------------------------------------------------------
ALERT_TOKEN_FILE="$LOCAL_DIR/alert-token"
[ -f "$ALERT_TOKEN_FILE" ] || ( umask 077; openssl rand -hex 24 > "$ALERT_TOKEN_FILE" )
# The operator installed in the cluster (install.sh pins its Service to OPERATOR_SERVICE_IP). To send alerts to an
# operator run on the host instead: ALERT_WEBHOOK_URL=http://$NODE_IP:$OPERATOR_HTTP_PORT/alerts make cluster-up.
ALERT_WEBHOOK_URL="${ALERT_WEBHOOK_URL:-http://$OPERATOR_SERVICE_IP:$OPERATOR_HTTP_PORT/alerts}"
mkdir -p "$STATE_DIR/alertmanager" "$LOCAL_DIR/prometheus/rules" "$LOCAL_DIR/prometheus/targets" "$STATE_DIR/prometheus"
render "$LOCAL_DIR/alertmanager.yml" <<AM
# Generated by tests/infra/cluster-up.sh. Alerts go to the operator's webhook (v4 payload, bearer token), by
# default the in-cluster operator's Service; alerts labelled mlops_test_receiver="true" go to the integration
# tests' receiver instead.
route:
  receiver: mlops-operator
  group_by: [alertname, model, version]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1m
  routes:
  - receiver: test-receiver
    matchers: ['mlops_test_receiver="true"']
receivers:
- name: mlops-operator
  webhook_configs:
  - url: $ALERT_WEBHOOK_URL
    send_resolved: true
    http_config: {authorization: {type: Bearer, credentials_file: $ALERT_TOKEN_FILE}}
- name: test-receiver
  webhook_configs:
  - url: http://127.0.0.1:$ALERT_TEST_RECEIVER_PORT/alerts
    send_resolved: true
    http_config: {authorization: {type: Bearer, credentials_file: $ALERT_TOKEN_FILE}}
AM
reload_if_changed alertmanager "http://$NODE_IP:$ALERTMANAGER_PORT/-/reload" "$RENDER_CHANGED"
port_free_or_ours alertmanager "$NODE_IP" $ALERTMANAGER_PORT
launch alertmanager prometheus-alertmanager --config.file "$LOCAL_DIR/alertmanager.yml" \
  --storage.path "$STATE_DIR/alertmanager" --web.listen-address "$NODE_IP:$ALERTMANAGER_PORT" \
  --cluster.listen-address= 
wait_for alertmanager 30 curl -fsS "http://$NODE_IP:$ALERTMANAGER_PORT/-/ready"

render "$LOCAL_DIR/prometheus.yml" <<PM
# Generated by tests/infra/cluster-up.sh. Short intervals: the loop is tested with compressed time.
global: {scrape_interval: 5s, evaluation_interval: 5s}
alerting:
  alertmanagers: [{static_configs: [{targets: ["$NODE_IP:$ALERTMANAGER_PORT"]}]}]
rule_files:
- $REPO_ROOT/manifests/monitoring/*.yaml
- $LOCAL_DIR/prometheus/rules/*.yaml
scrape_configs:
- job_name: kubernetes-pods      # pods annotated prometheus.io/scrape: "true" (tests/infra/pod_sd.py)
  file_sd_configs: [{files: ["$LOCAL_DIR/prometheus/pods.json"], refresh_interval: 2s}]
- job_name: local-targets        # tests drop file_sd JSON files here for processes on the host
  file_sd_configs: [{files: ["$LOCAL_DIR/prometheus/targets/*.json"], refresh_interval: 5s}]
PM
reload_if_changed prometheus "http://$NODE_IP:$PROMETHEUS_PORT/-/reload" "$RENDER_CHANGED"
[ -f "$LOCAL_DIR/prometheus/pods.json" ] || echo '[]' > "$LOCAL_DIR/prometheus/pods.json"
launch prometheus-pod-sd python3 "$INFRA/pod_sd.py" "$PKI_DIR/prometheus.kubeconfig" "$LOCAL_DIR/prometheus/pods.json" 2
port_free_or_ours prometheus "$NODE_IP" $PROMETHEUS_PORT
launch prometheus prometheus --config.file "$LOCAL_DIR/prometheus.yml" \
  --storage.tsdb.path "$STATE_DIR/prometheus" --storage.tsdb.retention.time 1d \
  --web.listen-address "$NODE_IP:$PROMETHEUS_PORT" --web.enable-lifecycle
wait_for prometheus 60 curl -fsS "http://$NODE_IP:$PROMETHEUS_PORT/-/ready"

# --- CoreDNS: cluster.local only, forwards nothing ------------------------------------------------------------
render "$LOCAL_DIR/Corefile" <<CF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $PKI_DIR/coredns.kubeconfig mlops-local
        pods insecure
    }
    cache 5
}
.:53 {
    bind $NODE_IP
    errors
    # Nothing outside the cluster is resolved or forwarded.
    template ANY ANY {
        rcode REFUSED
    }
}
CF
port_free_or_ours coredns "$NODE_IP" 53
launch coredns coredns -conf "$LOCAL_DIR/Corefile"
wait_for coredns 30 bash -c "ss -Hlun 'sport = :53' | grep -q '$NODE_IP:53'"

# --- the node -------------------------------------------------------------------------------------------
if [ "$NODE_ENABLED" = "1" ]; then
  # shellcheck source=node-up.sh
  source "$INFRA/node-up.sh"
fi

# --- .local/env -----------------------------------------------------------------------------------------------
render "$LOCAL_DIR/env" <<ENV
# Generated by 'make cluster-up'. Source it: set -a; . .local/env; set +a
PATH=$K8S_BIN:$TOOLS_BIN:\$PATH
KUBECONFIG=$KC_ADMIN
S3_ENDPOINT_URL=$S3_ENDPOINT_URL
S3_BUCKET=$S3_BUCKET
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_REGION=us-east-1
S3_READONLY_ACCESS_KEY_ID=$S3_READONLY_ACCESS_KEY_ID
S3_READONLY_SECRET_ACCESS_KEY=$S3_READONLY_SECRET_ACCESS_KEY
PROMETHEUS_URL=http://$NODE_IP:$PROMETHEUS_PORT
ALERTMANAGER_URL=http://$NODE_IP:$ALERTMANAGER_PORT
REDIS_URL=redis://$NODE_IP:$REDIS_PORT/0
REDIS_PASSWORD=$REDIS_PASSWORD
S3_ALT_KIND=versitygw
S3_ALT_ENDPOINT_URL=http://127.0.0.1:$S3_ALT_PORT
S3_ALT_BUCKET=$S3_ALT_BUCKET
S3_ALT_ACCESS_KEY_ID=$S3_ALT_ACCESS_KEY_ID
S3_ALT_SECRET_ACCESS_KEY=$S3_ALT_SECRET_ACCESS_KEY
ALERT_WEBHOOK_URL=$ALERT_WEBHOOK_URL
ALERT_WEBHOOK_TOKEN_FILE=$ALERT_TOKEN_FILE
ALERT_TEST_RECEIVER_PORT=$ALERT_TEST_RECEIVER_PORT
PROMETHEUS_RULES_DIR=$LOCAL_DIR/prometheus/rules
PROMETHEUS_TARGETS_DIR=$LOCAL_DIR/prometheus/targets
CONTAINERD_ADDRESS=$CONTAINERD_SOCK
MLOPS_NODE_IP=$NODE_IP
MLOPS_NODE_ENABLED=$NODE_ENABLED
ENV
chmod 600 "$LOCAL_DIR/env"
trap - EXIT
log "cluster-up: done in $(( $(date +%s) - T0 ))s. Use it with: set -a; . .local/env; set +a"
