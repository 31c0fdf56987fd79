#!/usr/bin/env bash
# Installs, idempotently, the Debian packages the local cluster and the offline image build need.
source "$(dirname "$0")/lib.sh"

PKGS=(etcd-server containerd runc containernetworking-plugins iptables conntrack iproute2 ethtool socat
      prometheus prometheus-alertmanager openssl buildah fuse-overlayfs debootstrap
      ca-certificates curl jq procps psmisc util-linux
      redis-server redis-tools  # the online feature store (redis.sh)
      lua5.4)  # the chart tier runs the Argo CD health checks (charts/mlops-operator/files/argocd-health)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then log "debian packages: all present"; exit 0; fi
[ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root (run as root or install them yourself)"
log "debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed"
# --no-install-recommends keeps the node lean; policy-rc.d stops Debian from starting the daemons:
# the cluster scripts start them with the project's own configuration.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
# A packaged daemon started before policy-rc.d existed (an older install, or the user's own) is never stopped
# here: it may be the machine's own (Docker's containerd). Name it, so a port or socket clash is explained.
for svc in prometheus prometheus-alertmanager containerd etcd prometheus-node-exporter; do
  pids=$(pgrep -d, -f "^/usr/bin/$svc " 2>/dev/null || true)
  [ -z "$pids" ] || log "note: a system $svc is running (pid $pids); it is left alone — stop it if the local cluster's ports clash"
done
log "debian packages: done"
