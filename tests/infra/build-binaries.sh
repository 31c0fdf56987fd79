#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries, MinIO, versitygw, helm and CoreDNS from the Go module proxy and caches
# them by version under $CACHE_DIR. Reuses what is cached; a cold run is unattended (tens of minutes).
# Usage: build-binaries.sh [all|kubernetes|tools|minio|versitygw|helm|kubectl|kindcheck|chart]
# (chart = helm, kubectl and kind-config-check: what `make lint` and the chart tier need, without the cluster's
# other binaries)
source "$(dirname "$0")/lib.sh"

need go "Install Go (>= 1.24) — e.g. 'apt-get install golang' or the official tarball."

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

build_kubernetes() {
  local missing=()
  for c in "${K8S_CMDS[@]}"; do [ -x "$K8S_BIN/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} -eq 0 ]; then log "kubernetes $K8S_VERSION: cached in $K8S_BIN"; return; fi
  local ver="${K8S_VERSION#v}" work="$CACHE_DIR/kubernetes/$K8S_VERSION/src"
  mkdir -p "$work" "$K8S_BIN"
  log "kubernetes $K8S_VERSION: building ${missing[*]} (cold build: 20-40 min on 2 cores)"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths; a
  # wrapper module pins each staging module to its published v0.X.Y instead.
  ( cd "$work"
    [ -f go.mod ] || go mod init mlops-operator.local/k8sbuild >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > kubernetes.json
    local upstream_mod; upstream_mod=$(python3 -c 'import json,sys; print(json.load(open("kubernetes.json"))["GoMod"])')
    local staging_ver="v0.${ver#1.}"
    {
      echo "module mlops-operator.local/k8sbuild"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" | awk -v v="$staging_ver" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod
    printf 'package main\n\nimport (\n' > tools.go.tmp
    for c in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >> tools.go.tmp; done
    printf ')\n\nfunc main() {}\n' >> tools.go.tmp
    mv tools.go.tmp tools.go
    log "kubernetes: resolving modules (go mod tidy)"
    GOFLAGS=-mod=mod go mod tidy >tidy.log 2>&1 || { tail -20 tidy.log >&2; die "go mod tidy failed for kubernetes $K8S_VERSION (log: $work/tidy.log)"; }
    local ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$ver" | cut -d. -f2) -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local i=0
    for c in "${missing[@]}"; do
      i=$((i+1))
      log "kubernetes: [$i/${#missing[@]}] go build $c"
      CGO_ENABLED=0 go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$K8S_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" \
        >"build-$c.log" 2>&1 || { tail -20 "build-$c.log" >&2; die "building $c failed (log: $work/build-$c.log)"; }
      mv "$K8S_BIN/$c.tmp" "$K8S_BIN/$c"
    done
  )
  log "kubernetes $K8S_VERSION: built into $K8S_BIN"
}

go_install_cached() {  # go_install_cached NAME MODULE@VERSION KEY
  local name="$1" target="$2" key="$3"
  local dest="$CACHE_DIR/tools/$key"
  if [ -x "$dest/$name" ]; then ln -sf "$dest/$name" "$TOOLS_BIN/$name"; log "$name: cached ($key)"; return; fi
  mkdir -p "$dest" "$TOOLS_BIN"
  log "$name: go install $target (a few minutes cold)"
  GOBIN="$dest" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$target" >"$dest.log" 2>&1 \
    || { tail -20 "$dest.log" >&2; die "building $name failed (log: $dest.log)"; }
  ln -sf "$dest/$name" "$TOOLS_BIN/$name"
}

build_minio() {  # the local S3 server, also packaged into the batteries image (build-images.sh)
  mkdir -p "$TOOLS_BIN"
  go_install_cached minio "github.com/minio/minio@$MINIO_VERSION" "minio-$MINIO_VERSION"
}

# kind-config-check: kind-config.yaml decoded strictly into kind's own config types (the chart tier's test).
build_kind_config_check() {
  local dest="$CACHE_DIR/tools/kind-config-check-$KIND_VERSION" src="$REPO_ROOT/tests/infra/kind-config-check"
  mkdir -p "$TOOLS_BIN"
  if [ -x "$dest/kind-config-check" ] && [ "$dest/kind-config-check" -nt "$src/main.go" ]; then
    ln -sf "$dest/kind-config-check" "$TOOLS_BIN/kind-config-check"; log "kind-config-check: cached ($KIND_VERSION)"; return
  fi
  mkdir -p "$dest"
  log "kind-config-check: go build against sigs.k8s.io/kind $KIND_VERSION"
  ( cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/kind-config-check.tmp" . ) >"$dest.log" 2>&1 \
    || { tail -20 "$dest.log" >&2; die "building kind-config-check failed (log: $dest.log)"; }
  mv "$dest/kind-config-check.tmp" "$dest/kind-config-check"
  ln -sf "$dest/kind-config-check" "$TOOLS_BIN/kind-config-check"
}

build_tools() {
  build_helm
  build_minio
  go_install_cached coredns "github.com/coredns/coredns@$COREDNS_VERSION" "coredns-$COREDNS_VERSION"
  build_versitygw
}

build_helm() {
  mkdir -p "$TOOLS_BIN"
  go_install_cached helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "helm-$HELM_VERSION"
}

build_versitygw() {  # the second S3 server of the storage-contract tests
  mkdir -p "$TOOLS_BIN"
  go_install_cached versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" "versitygw-$VERSITYGW_VERSION"
}

case "${1:-all}" in
  kubernetes) build_kubernetes ;;
  tools) build_tools ;;
  minio) build_minio ;;
  versitygw) build_versitygw ;;
  helm) build_helm ;;
  kubectl) K8S_CMDS=(kubectl); build_kubernetes ;;
  kindcheck) build_kind_config_check ;;
  chart) build_helm; build_kind_config_check; K8S_CMDS=(kubectl); build_kubernetes ;;
  all) build_kubernetes; build_tools ;;
  *) die "usage: $0 [all|kubernetes|tools|minio|versitygw|helm|kubectl|kindcheck|chart]" ;;
esac
