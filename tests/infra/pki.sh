#!/usr/bin/env bash
# Creates the local cluster's PKI and kubeconfigs under .local/pki (idempotent: existing files are kept).
source "$(dirname "$0")/lib.sh"
need openssl "Run tests/infra/install-deps.sh."
mkdir -p "$PKI_DIR"; cd "$PKI_DIR"
umask 077

if [ ! -f ca.key ]; then
  log "pki: creating cluster CA"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=mlops-local-ca" >/dev/null 2>&1
fi
[ -f sa.key ] || { openssl genrsa -out sa.key 2048 >/dev/null 2>&1; openssl rsa -in sa.key -pubout -out sa.pub >/dev/null 2>&1; }

# cert NAME SUBJECT EXT: a CA-signed cert; EXT is an openssl extension block (usage + SANs).
cert() {
  local name="$1" subj="$2" ext="$3"
  [ -f "$name.crt" ] && return 0
  printf '%s\n' "$ext" > "$name.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" >/dev/null 2>&1
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" >/dev/null 2>&1 || die "pki: signing $name failed"
  rm -f "$name.csr" "$name.ext"
}
CLIENT="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
SERVER_SANS="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$NODE_IP"

cert apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$SERVER_SANS"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT"
cert admin "/O=system:masters/CN=mlops-admin" "$CLIENT"
cert controller-manager "/CN=system:kube-controller-manager" "$CLIENT"
cert scheduler "/CN=system:kube-scheduler" "$CLIENT"
cert kube-proxy "/CN=system:kube-proxy" "$CLIENT"
cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT"
cert kubelet-serving "/CN=$NODE_NAME" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$NODE_NAME,IP:$NODE_IP"
cert coredns "/CN=mlops:coredns" "$CLIENT"          # RBAC in tests/infra/manifests/bootstrap.yaml
cert prometheus "/CN=mlops:prometheus" "$CLIENT"    # RBAC in tests/infra/manifests/bootstrap.yaml

kubeconfig() {  # kubeconfig NAME CERT
  local name="$1" c="$2"
  [ -f "$name.kubeconfig" ] && return 0
  cat > "$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mlops-local
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $PKI_DIR/ca.crt
users:
- name: $c
  user:
    client-certificate: $PKI_DIR/$c.crt
    client-key: $PKI_DIR/$c.key
contexts:
- name: mlops-local
  context: {cluster: mlops-local, user: $c}
current-context: mlops-local
KC
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kube-proxy kube-proxy
kubeconfig kubelet kubelet-client
kubeconfig coredns coredns
kubeconfig prometheus prometheus
chmod 0644 ca.crt
log "pki: ready in $PKI_DIR"
