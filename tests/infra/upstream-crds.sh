#!/usr/bin/env bash
# The upstream CRDs of the traffic providers whose data planes do not run on the local cluster (Gateway API
# HTTPRoute, KServe InferenceService), so the objects the operator writes meet the real schemas: unknown
# fields (refused by server-side apply, pruned by other writes), types, bounds, CEL rules. The YAML comes from the projects' Go modules through the Go module proxy
# (the only network it uses; no VCS fallback) and is cached by version under $CACHE_DIR/upstream-crds.
# Usage: upstream-crds.sh [fetch|apply|paths]
#   fetch  download into the cache (default); apply  fetch, then `kubectl apply --server-side` (idempotent)
#   and wait for Established; paths  print the cached CRD files, one a line.
source "$(dirname "$0")/lib.sh"

# Pinned versions: bump here, caches are keyed by them. For KServe the proxy refuses the version list
# (403) and v0.21.0 (our python SDK pin), v0.21.0-rc0/-rc1, v0.20.1/.2 ("not available"); v0.20.0 is
# served and is the newest one found. Gateway API: the standard channel (RequestMirror percent is in it).
GATEWAY_API_MODULE="sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.3}"
GATEWAY_API_FILES=(config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml
                   config/crd/standard/gateway.networking.k8s.io_gateways.yaml
                   config/crd/standard/gateway.networking.k8s.io_httproutes.yaml)
KSERVE_MODULE="github.com/kserve/kserve"
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"
KSERVE_FILES=(config/crd/full/serving.kserve.io_inferenceservices.yaml)
CRD_NAMES=(gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io
           httproutes.gateway.networking.k8s.io inferenceservices.serving.kserve.io)

UPSTREAM_DIR="$CACHE_DIR/upstream-crds"
GO="$(command -v go || echo /usr/local/go/bin/go)"
# The machine's Go proxy (as the Kubernetes build uses it), without ",direct": the proxy only, never a VCS.
UPSTREAM_GOPROXY="${UPSTREAM_GOPROXY:-$("$GO" env GOPROXY 2>/dev/null | sed 's/,direct$//; s/|direct$//')}"
UPSTREAM_GOPROXY="${UPSTREAM_GOPROXY:-https://proxy.golang.org}"

cache_dir_of() {  # cache_dir_of MODULE VERSION
  echo "$UPSTREAM_DIR/${1//\//_}/$2"
}

# fetch_module MODULE VERSION FILE...: copy FILEs of MODULE@VERSION into the cache unless all are there.
fetch_module() {
  local module="$1" version="$2"; shift 2
  local dest f missing=() gotmp json dir err
  dest="$(cache_dir_of "$module" "$version")"
  for f in "$@"; do [ -s "$dest/$(basename "$f")" ] || missing+=("$f"); done
  if [ ${#missing[@]} -eq 0 ]; then log "$module@$version: cached in $dest"; return 0; fi
  [ -x "$GO" ] || die "go not found (looked on PATH and at /usr/local/go/bin/go); it fetches the CRDs from the Go module proxy"
  mkdir -p "$CACHE_DIR"
  gotmp="$(mktemp -d "$CACHE_DIR/gomod-tmp.XXXXXX")"
  # A throw-away module cache (writable, so it can be removed); only the proxy, never a VCS.
  log "$module@$version: go mod download via $UPSTREAM_GOPROXY (module zip, may take a minute)"
  json=$(cd "$gotmp" && GOPATH="$gotmp/gopath" GOMODCACHE="$gotmp/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
         GOPROXY="$UPSTREAM_GOPROXY" GO111MODULE=on \
         "$GO" mod download -json "$module@$version" 2>&1) || true
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  err=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p')
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    rm -rf "$gotmp"
    die "$module@$version: not downloaded: ${err:-$json}"
  fi
  mkdir -p "$dest"
  for f in "${missing[@]}"; do
    [ -f "$dir/$f" ] || { rm -rf "$gotmp"; die "$module@$version: $f is not in the module (layout changed?)"; }
    cp "$dir/$f" "$dest/$(basename "$f").tmp" && mv "$dest/$(basename "$f").tmp" "$dest/$(basename "$f")"
    log "$module@$version: cached $(basename "$f") ($(wc -c < "$dest/$(basename "$f")") bytes)"
  done
  rm -rf "$gotmp"
}

paths() {
  local f
  for f in "${GATEWAY_API_FILES[@]}"; do echo "$(cache_dir_of "$GATEWAY_API_MODULE" "$GATEWAY_API_VERSION")/$(basename "$f")"; done
  for f in "${KSERVE_FILES[@]}"; do echo "$(cache_dir_of "$KSERVE_MODULE" "$KSERVE_VERSION")/$(basename "$f")"; done
}

fetch() {
  fetch_module "$GATEWAY_API_MODULE" "$GATEWAY_API_VERSION" "${GATEWAY_API_FILES[@]}"
  fetch_module "$KSERVE_MODULE" "$KSERVE_VERSION" "${KSERVE_FILES[@]}"
}

apply() {
  need kubectl "Run 'make cluster-up' and source .local/env (kubectl of the local cluster)."
  fetch
  local f args=()
  while read -r f; do args+=(-f "$f"); done < <(paths)
  log "upstream CRDs: kubectl apply --server-side (gateway-api $GATEWAY_API_VERSION, kserve $KSERVE_VERSION)"
  # Server-side: the full InferenceService CRD is too large for client-side apply's last-applied annotation.
  kubectl apply --server-side --force-conflicts --field-manager=mlops-upstream-crds "${args[@]}" >/dev/null \
    || die "applying the upstream CRDs failed (files: $UPSTREAM_DIR)"
  # A CRD created a moment ago may have no status yet, which `kubectl wait` reports as an error: retry.
  local t0; t0=$(date +%s)
  until kubectl wait --for=condition=Established --timeout=10s "${CRD_NAMES[@]/#/crd/}" >/dev/null 2>&1; do
    [ $(( $(date +%s) - t0 )) -lt 60 ] || die "upstream CRDs not Established within 60s: kubectl get crd ${CRD_NAMES[*]}"
    sleep 1
  done
  log "upstream CRDs: Established (${CRD_NAMES[*]})"
}

case "${1:-fetch}" in
  fetch) fetch ;;
  apply) apply ;;
  paths) paths ;;
  *) die "usage: $0 [fetch|apply|paths]" ;;
esac
