# Shared helpers for the local-cluster scripts. Sourced, never executed.
# shellcheck shell=bash
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_DIR="${MLOPS_CACHE_DIR:-$HOME/.cache/mlops-operator}"
LOCAL_DIR="${MLOPS_LOCAL_DIR:-$REPO_ROOT/.local}"
LOG_DIR="$LOCAL_DIR/logs"
RUN_DIR="$LOCAL_DIR/run"

# Pinned versions: bump here, caches are keyed by them.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
# The second S3 server (storage-contract tests run against MinIO and this one; docs/storage.md).
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
# kind release whose config types kind-config.yaml is checked against (tests/infra/kind-config-check/go.mod pins the same).
KIND_VERSION="${KIND_VERSION:-v0.33.0}"

K8S_BIN="$CACHE_DIR/kubernetes/$K8S_VERSION/bin"
TOOLS_BIN="$CACHE_DIR/tools/bin"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

need() {  # need CMD "how to get it"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found. $2"
}

# Cluster addressing. Every address lives on this machine: the node IP on a dummy interface, pods on a
# local bridge, services virtual (kube-proxy). Nothing routes past the machine (see node-net.sh).
NODE_NAME="${NODE_NAME:-mlops-node}"
NODE_IFACE="${NODE_IFACE:-mlops0}"
NODE_IP="${NODE_IP:-10.213.0.1}"
POD_CIDR="${POD_CIDR:-10.214.0.0/24}"
POD_BRIDGE="${POD_BRIDGE:-mlops-br0}"
SERVICE_CIDR="${SERVICE_CIDR:-10.215.0.0/24}"
KUBERNETES_SVC_IP="${KUBERNETES_SVC_IP:-10.215.0.1}"
# The installed operator's Service gets this fixed ClusterIP (install.sh) so the host-run Alertmanager can
# name it in its config; the host reaches ClusterIPs through kube-proxy. It lies in the static band of
# SERVICE_CIDR (the first 16 addresses of a /24), which the apiserver hands out to no other Service while
# the upper band has room: a dynamically allocated Service cannot take it before the operator is installed.
OPERATOR_SERVICE_IP="${OPERATOR_SERVICE_IP:-10.215.0.8}"
CLUSTER_DNS_IP="$NODE_IP"            # CoreDNS runs on the host, bound to the node IP

ETCD_PORT=23790; ETCD_PEER_PORT=23800
APISERVER_PORT=6443
MINIO_PORT=9000; MINIO_CONSOLE_PORT=9001
S3_ALT_PORT=9010                      # versitygw (posix backend), 127.0.0.1 only (s3-alt.sh)
S3_ALT_BUCKET="${S3_ALT_BUCKET:-mlops-alt}"
REDIS_PORT=6379                       # the online feature store (redis.sh), on the node IP: pods reach it
PROMETHEUS_PORT=9090; ALERTMANAGER_PORT=9093
ALERT_TEST_RECEIVER_PORT=18099        # tests receive Alertmanager webhooks here (label mlops_test_receiver)
OPERATOR_HTTP_PORT=8081               # the operator's /metrics and /alerts (in the pod, or a `kopf run` on the host)

PKI_DIR="$LOCAL_DIR/pki"
STATE_DIR="$LOCAL_DIR/state"
CONTAINERD_ROOT="${CONTAINERD_ROOT:-/var/lib/containerd}"   # images persist across clusters (cache)
CONTAINERD_SOCK="${CONTAINERD_SOCK:-/run/containerd/containerd.sock}"
PAUSE_IMAGE="${PAUSE_IMAGE:-localhost/mlops-pause:3.10}"

pidfile() { echo "$RUN_DIR/$1.pid"; }
is_running() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

# start NAME CMD...: start a component in its own session, log to $LOG_DIR/NAME.log, record its PID.
start() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  if is_running "$name"; then log "$name: already running (pid $(cat "$(pidfile "$name")"))"; return 0; fi
  log "$name: starting (log: $LOG_DIR/$name.log)"
  # The component outlives this script, so it must not keep the caller's open files beyond 0-2: a lock
  # held by whoever started the cluster (`flock FILE make test`) would otherwise stay held while it runs.
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
    done
    exec setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null
  ) &
  echo $! > "$(pidfile "$name")"
}

status_line() {  # status_line NAME: one line of cluster-status; fails when NAME is not running
  if is_running "$1"; then printf '%-24s running  pid %-8s %s\n' "$1" "$(cat "$(pidfile "$1")")" "$LOG_DIR/$1.log"
  else printf '%-24s stopped                 %s\n' "$1" "$LOG_DIR/$1.log"; return 1; fi
}

component_cli() {  # the up|down|status entry point of a one-service script (its up() function, its $NAME)
  case "${1:-}" in
    up) up ;;
    down) stop "$NAME" ;;
    status) status_line "$NAME" ;;
    *) die "usage: $0 up|down|status" ;;
  esac
}

stop() {  # stop NAME: TERM, then KILL after 10 s; only the PID we recorded.
  local name="$1" f pid i
  f=$(pidfile "$name"); [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name: did not stop on TERM, killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

# wait_for NAME TIMEOUT_S CMD...: poll CMD until it succeeds; on timeout show the log and fail.
wait_for() {
  local name="$1" timeout="$2"; shift 2
  local start_ts; start_ts=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then
      tail -n 25 "$LOG_DIR/$name.log" >&2 || true
      die "$name exited during startup; see $LOG_DIR/$name.log (last lines above)"
    fi
    if [ $(( $(date +%s) - start_ts )) -ge "$timeout" ]; then
      tail -n 25 "$LOG_DIR/$name.log" >&2 || true
      die "$name did not become ready within ${timeout}s; see $LOG_DIR/$name.log (last lines above)"
    fi
    sleep 0.5
  done
  log "$name: ready ($(( $(date +%s) - start_ts ))s)"
}

port_free_or_ours() {  # port_free_or_ours NAME ADDR PORT: fail clearly if another process holds the port
  local name="$1" addr="$2" port="$3" holder
  is_running "$name" && return 0
  holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -E "($addr|\*|0\.0\.0\.0|\[::\]):$port " | head -n1 || true)
  [ -z "$holder" ] || die "$name: port $addr:$port is taken by another process: $holder. Stop it (or run 'make cluster-down' if it is a stale cluster) and retry."
}

# render FILE: write stdin to FILE only when the content differs (components such as kube-proxy exit when
# their config file changes, so an idempotent cluster-up must not touch unchanged files). Sets
# RENDER_CHANGED=1 when FILE was written, 0 when it was already current.
RENDER_CHANGED=0
render() {
  local file="$1" tmp; tmp="$(mktemp "$file.XXXX")"
  cat > "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; RENDER_CHANGED=0; else mv "$tmp" "$file"; RENDER_CHANGED=1; fi
}

# reload_if_changed NAME URL CHANGED: a running component whose config file was just re-rendered (CHANGED=1)
# re-reads it through its reload endpoint (POST URL); a component not running yet reads it when it starts.
reload_if_changed() {
  local name="$1" url="$2" changed="$3"
  [ "$changed" = 1 ] && is_running "$name" || return 0
  log "$name: configuration changed, reloading"
  curl -fsS -X POST -o /dev/null "$url" || die "$name: reloading its configuration failed; see $LOG_DIR/$name.log"
}
