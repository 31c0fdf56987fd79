#!/usr/bin/env bash
# Stops exactly the processes cluster-up started (recorded PIDs), the pods' containers, and the node's
# networking. WIPE=1 also deletes the cluster state (.local/state, certificates, env).
source "$(dirname "$0")/lib.sh"
INFRA="$REPO_ROOT/tests/infra"

stop kube-proxy
stop kubelet
if is_running containerd; then
  # Pods outlive kubelet inside containerd-shim processes; end them before containerd itself.
  for t in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
  done
  for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
  done
fi
stop containerd
# Leftover pod mounts and network namespaces (kubelet volumes, sandboxes).
if [ -d "$STATE_DIR/node" ]; then
  grep -o " $STATE_DIR/node[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
fi
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
"$INFRA/s3-alt.sh" down
for name in coredns prometheus prometheus-pod-sd alertmanager redis minio kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$name"
done
"$INFRA/node-net.sh" down
if [ "${WIPE:-0}" = "1" ]; then
  log "cluster-down: WIPE=1, deleting $LOCAL_DIR state"
  rm -rf "$STATE_DIR" "$PKI_DIR" "$LOCAL_DIR/env" "$LOCAL_DIR/run" "$LOCAL_DIR/s3-credentials" "$LOCAL_DIR/s3-alt-credentials" "$LOCAL_DIR/redis-credentials" "$LOCAL_DIR/alert-token"
fi
log "cluster-down: done"
