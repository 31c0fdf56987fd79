#!/usr/bin/env bash
# (grep -q under pipefail can fail a pipeline by SIGPIPE on multi-line input: such checks use grep >/dev/null)
# Host networking for the local node: the node IP on a dummy (or port-less bridge) interface, forwarding for the pod bridge,
# and an isolation chain so pods can reach the node and each other but never route past this machine.
# Usage: node-net.sh up|down|check
source "$(dirname "$0")/lib.sh"

CHAIN=MLOPS-ISOLATION
SERVICE_GUARD=(-d "$SERVICE_CIDR" -j REJECT -m comment --comment "mlops: ClusterIPs without a Service never leave this machine")

up() {
  # A dummy interface holds the node IP; kernels without the dummy driver get a port-less bridge, which
  # behaves the same for a local address (nothing is attached, nothing leaves through it).
  if ! ip link show "$NODE_IFACE" >/dev/null 2>&1; then
    ip link add "$NODE_IFACE" type dummy 2>/dev/null || ip link add "$NODE_IFACE" type bridge \
      || die "node-net: cannot create interface $NODE_IFACE (neither dummy nor bridge devices are available)"
  fi
  ip addr show dev "$NODE_IFACE" | grep -F " $NODE_IP/" >/dev/null || ip addr add "$NODE_IP/32" dev "$NODE_IFACE"
  ip link set "$NODE_IFACE" up
  # Pods reach services through the host (kube-proxy DNAT), which needs forwarding between the pod bridge
  # and itself; the isolation chain below is what keeps forwarded traffic on this machine.
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
  # Forwarded traffic from pods may only leave through the pod bridge (to another pod, also after a
  # service DNAT); traffic to the node IP is local (INPUT), never forwarded.
  iptables -A "$CHAIN" -s "$POD_CIDR" ! -o "$POD_BRIDGE" -j DROP -m comment --comment "mlops: pods never route past this machine"
  iptables -A "$CHAIN" -d "$POD_CIDR" ! -i "$POD_BRIDGE" -j DROP -m comment --comment "mlops: nothing from outside reaches pods"
  # First in FORWARD, ahead of kube-proxy's accept rules: re-inserted on every call (kube-proxy prepends too).
  while iptables -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  iptables -I FORWARD 1 -j "$CHAIN"
  # The host reaches Services through kube-proxy's DNAT (nat OUTPUT runs before filter OUTPUT). A ClusterIP that
  # no Service holds is not DNATed and would follow the default route off the machine (e.g. Alertmanager posting
  # to the operator's fixed ClusterIP before the chart is installed): refuse it, live Services are untouched.
  iptables -C OUTPUT "${SERVICE_GUARD[@]}" 2>/dev/null || iptables -I OUTPUT 1 "${SERVICE_GUARD[@]}"
  log "node-net: $NODE_IFACE=$NODE_IP, pods $POD_CIDR isolated (chain $CHAIN)"
}

down() {
  iptables -D FORWARD -j "$CHAIN" 2>/dev/null || true
  while iptables -D OUTPUT "${SERVICE_GUARD[@]}" 2>/dev/null; do :; done
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
  ip link del "$NODE_IFACE" 2>/dev/null || true
  ip link del "$POD_BRIDGE" 2>/dev/null || true
}

check() {  # prints the isolation rules; exits non-zero if they are not in place
  iptables -S FORWARD | head -n 3
  iptables -S "$CHAIN"
  iptables -S FORWARD | sed -n 2p | grep -q -- "-j $CHAIN" || die "isolation chain is not first in FORWARD"
  iptables -S "$CHAIN" | grep -- "-s $POD_CIDR ! -o $POD_BRIDGE .*-j DROP" >/dev/null || die "pod egress drop rule missing"
  iptables -C OUTPUT "${SERVICE_GUARD[@]}" 2>/dev/null || die "the rule keeping unallocated ClusterIPs on this machine is missing"
}

case "${1:-}" in up) up ;; down) down ;; check) check ;; *) die "usage: $0 up|down|check" ;; esac
