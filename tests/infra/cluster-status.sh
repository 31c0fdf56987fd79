#!/usr/bin/env bash
# Shows each component of the local cluster: running or not, with its log file.
source "$(dirname "$0")/lib.sh"
rc=0
for name in etcd kube-apiserver kube-controller-manager kube-scheduler minio versitygw alertmanager prometheus-pod-sd prometheus coredns containerd kubelet kube-proxy; do
  if is_running "$name"; then printf '%-24s running  pid %-8s %s\n' "$name" "$(cat "$(pidfile "$name")")" "$LOG_DIR/$name.log"
  else printf '%-24s stopped                 %s\n' "$name" "$LOG_DIR/$name.log"; rc=1; fi
done
if [ -f "$LOCAL_DIR/env" ]; then
  set -a; . "$LOCAL_DIR/env"; set +a
  kubectl get nodes -o wide 2>/dev/null || true
fi
exit $rc
