#!/usr/bin/env bash
# Shows each component of the local cluster: running or not, with its log file.
source "$(dirname "$0")/lib.sh"
rc=0
for name in etcd kube-apiserver kube-controller-manager kube-scheduler minio versitygw redis alertmanager prometheus-pod-sd prometheus coredns containerd kubelet kube-proxy; do
  status_line "$name" || rc=1
done
if [ -f "$LOCAL_DIR/env" ]; then
  set -a; . "$LOCAL_DIR/env"; set +a
  kubectl get nodes -o wide 2>/dev/null || true
fi
exit $rc
