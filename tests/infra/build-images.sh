#!/usr/bin/env bash
# Builds the runtime, operator and batteries images (`make images`).
#
#   tests/infra/build-images.sh [runtime] [operator] [batteries]     (default: all three)
#
# The batteries image (the chart's in-cluster MinIO, Prometheus and Alertmanager) is built from a context
# directory assembled here: images/batteries/ plus the MinIO binary tests/infra/build-binaries.sh builds.
#
# With a working Docker (and IMAGE_BUILDER != buildah): `docker build`; load them into kind with
# `kind load docker-image`. Without Docker (these machines): the offline path
#   1. a Debian bookworm minbase rootfs made once by debootstrap from the Debian mirror, cached as a tar
#      and imported into a private buildah store as the local image debian:bookworm-slim;
#   2. `buildah bud --layers` of the same Dockerfiles (base and dependency layers come from the cache,
#      so a code change rebuilds only the last layer);
#   3. export to a docker-archive (cached) and `ctr -n k8s.io images import` into the cluster's containerd.
#
# Environment:
#   RUNTIME_IMAGE / OPERATOR_IMAGE / BATTERIES_IMAGE   image names (localhost/mlops-runtime:dev,
#                                    localhost/mlops-operator:dev, localhost/mlops-batteries:dev)
#   IMAGE_BUILDER                    auto (default) | docker | buildah
#   IMAGES_IMPORT=0                  build only: no containerd import (archives kept), no kind load
#   CONTAINERD_ADDRESS               containerd socket (/run/containerd/containerd.sock)
#   BUILD_CA_BUNDLE                  CA bundle for pip behind a TLS-intercepting proxy (default: $PIP_CERT)
#   DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR   mirrors for debootstrap and the base's sources
#   IMAGES_REFRESH_BASE=1            debootstrap the base again (security updates)
#   BUILDAH_STORAGE_DRIVER           overlay (default) | vfs
#   KIND_CLUSTER                     Docker path: the kind cluster to `kind load docker-image` into, when it
#                                    exists (mlops, the name in kind-config.yaml)
# Caches live in ${MLOPS_CACHE_DIR:-~/.cache/mlops-operator}/images, step logs in $LOG_DIR/images-*.log.
# shellcheck source=tests/infra/lib.sh
source "$(dirname "$0")/lib.sh"

RUNTIME_IMAGE="${RUNTIME_IMAGE:-localhost/mlops-runtime:dev}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-localhost/mlops-operator:dev}"
BATTERIES_IMAGE="${BATTERIES_IMAGE:-localhost/mlops-batteries:dev}"
IMAGE_BUILDER="${IMAGE_BUILDER:-auto}"
IMAGES_IMPORT="${IMAGES_IMPORT:-1}"
KIND_CLUSTER="${KIND_CLUSTER:-mlops}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-$CONTAINERD_SOCK}"
BUILD_CA_BUNDLE="${BUILD_CA_BUNDLE:-${PIP_CERT:-}}"
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BASE_IMAGE="debian:bookworm-slim"  # the Dockerfiles' default ARG BASE

IMAGES_CACHE="$CACHE_DIR/images"
BASE_TAR="$IMAGES_CACHE/base/debian-$DEBIAN_SUITE-minbase.tar"
ARCHIVE_DIR="$IMAGES_CACHE/archives"
BUILDAH_STORAGE_DRIVER="${BUILDAH_STORAGE_DRIVER:-overlay}"
# One store per driver: a store made with one driver cannot be opened with another.
BUILDAH_STORE="$IMAGES_CACHE/buildah$([ "$BUILDAH_STORAGE_DRIVER" = overlay ] || echo "-$BUILDAH_STORAGE_DRIVER")"

declare -A IMAGE_TAG=([runtime]="$RUNTIME_IMAGE" [operator]="$OPERATOR_IMAGE" [batteries]="$BATTERIES_IMAGE")

# build_context NAME: the directory to build NAME from. The repository for runtime and operator; for the
# batteries, images/batteries/ with the pinned MinIO binary beside it (whole files only: copied, then moved).
build_context() {
  [ "$1" = batteries ] || { echo "$REPO_ROOT"; return; }
  local dir="$IMAGES_CACHE/batteries-context"
  bash "$REPO_ROOT/tests/infra/build-binaries.sh" minio >&2
  mkdir -p "$dir"
  cp "$REPO_ROOT/images/batteries/mlops-batteries-minio" "$dir/.script.$$" && mv -f "$dir/.script.$$" "$dir/mlops-batteries-minio"
  cmp -s "$CACHE_DIR/tools/minio-$MINIO_VERSION/minio" "$dir/minio" \
    || { cp "$CACHE_DIR/tools/minio-$MINIO_VERSION/minio" "$dir/.minio.$$" && mv -f "$dir/.minio.$$" "$dir/minio"; }
  echo "$dir"
}

# step NAME CMD...: runs CMD with its output in $LOG_DIR/images-NAME.log and prints how long it took.
# With STEP_SHOW=REGEX, matching output lines (e.g. the Dockerfile's STEP lines) are echoed as progress.
step() {
  local name="$1" t0=$SECONDS rc=0; shift
  local logf="$LOG_DIR/images-$name.log"
  log "-> $name (log: $logf)"
  if [ -n "${STEP_SHOW:-}" ]; then
    set +e
    "$@" 2>&1 | tee "$logf" | grep --line-buffered -E "$STEP_SHOW" \
      | while IFS= read -r line; do log "     ${line:0:150}"; done
    rc=${PIPESTATUS[0]}
    set -e
  else
    "$@" >"$logf" 2>&1 || rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 25 "$logf" | sed 's/^/    | /' >&2
    die "step '$name' failed (exit $rc) after $((SECONDS - t0))s; full log: $logf"
  fi
  log "   $name done in $((SECONDS - t0))s"
}

want_docker() {
  case "$IMAGE_BUILDER" in
    buildah) return 1 ;;
    docker) docker info >/dev/null 2>&1 || die "IMAGE_BUILDER=docker but 'docker info' fails (is the daemon running?)"; return 0 ;;
    auto) command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 ;;
    *) die "IMAGE_BUILDER must be auto, docker or buildah (got '$IMAGE_BUILDER')" ;;
  esac
}

secret_args() {  # the CA bundle as build secret "pip-ca" (see images/venv-install.sh), when there is one
  [ -z "$BUILD_CA_BUNDLE" ] || printf '%s\n' --secret "id=pip-ca,src=$BUILD_CA_BUNDLE"
}

# ---------------------------------------------------------------- Docker path
docker_build() {  # docker_build NAME
  local name="$1" tag="${IMAGE_TAG[$1]}" context
  local -a secrets; mapfile -t secrets < <(secret_args)
  context=$(build_context "$name")
  STEP_SHOW='^#[0-9]+ (\[|DONE|CACHED|ERROR)' \
    step "build-$name" env DOCKER_BUILDKIT=1 docker build --progress=plain "${secrets[@]}" \
      -f "$REPO_ROOT/images/$name/Dockerfile" -t "$tag" "$context"
  if [ "$IMAGES_IMPORT" = 0 ]; then
    log "   IMAGES_IMPORT=0: $tag left in Docker; for kind: kind load docker-image --name $KIND_CLUSTER $tag"
  elif command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    step "kind-load-$name" kind load docker-image --name "$KIND_CLUSTER" "$tag"
  else
    log "   no kind cluster '$KIND_CLUSTER' (kind create cluster --config kind-config.yaml); later:"
    log "     kind load docker-image --name $KIND_CLUSTER $tag"
  fi
}

# ---------------------------------------------------------------- offline path (buildah)
bh() { buildah --root "$BUILDAH_STORE/root" --runroot "$BUILDAH_STORE/runroot" \
         --storage-driver "$BUILDAH_STORAGE_DRIVER" "$@"; }

# Makes the rootfs the way the official slim image is made (debuerreotype): minbase, no docs/man/locales,
# no apt caches, Debian's full set of sources (incl. security), nothing from the build host left behind.
debootstrap_base() {
  local dir="$1"
  rm -rf "$dir"; mkdir -p "$dir"
  debootstrap --variant=minbase --arch=amd64 "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR"
  cat > "$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
  cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
CFG
  printf 'APT::AutoRemove::SuggestsImportant "false";\n' > "$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"; chmod 755 "$dir/usr/sbin/policy-rc.d"
  rm -f "$dir/etc/apt/sources.list"
  cat > "$dir/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  ( cd "$dir" && rm -rf usr/share/doc/*/[!c]* usr/share/man/* usr/share/info/* usr/share/lintian/* \
      usr/share/locale/[!l]* var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
      var/log/*.log var/log/apt/* tmp/* var/tmp/* )
  find "$dir/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  : > "$dir/etc/machine-id"; rm -f "$dir/etc/hostname" "$dir/etc/resolv.conf" "$dir/etc/hosts"
  tar --numeric-owner --xattrs --acls --sort=name -C "$dir" -cf "$BASE_TAR.part" .
  mv "$BASE_TAR.part" "$BASE_TAR"; date -u +%FT%TZ > "$BASE_TAR.created"
  rm -rf "$dir"
}

import_base() {  # the cached rootfs tar -> local image debian:bookworm-slim in the private store
  local ctr mnt
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  tar --numeric-owner --xattrs --acls -xpf "$BASE_TAR" -C "$mnt"
  bh umount "$ctr"
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --created-by "debootstrap --variant=minbase $DEBIAN_SUITE $(cat "$BASE_TAR.created") (tests/infra/build-images.sh)" \
    "$ctr"
  bh commit --rm "$ctr" "localhost/$BASE_IMAGE"
  bh tag "localhost/$BASE_IMAGE" "docker.io/library/$BASE_IMAGE"
}

ensure_base() {
  mkdir -p "$(dirname "$BASE_TAR")"
  if [ "${IMAGES_REFRESH_BASE:-0}" = 1 ] || [ ! -s "$BASE_TAR" ]; then
    step base-debootstrap debootstrap_base "$IMAGES_CACHE/base/rootfs"
    bh rmi -f "localhost/$BASE_IMAGE" "docker.io/library/$BASE_IMAGE" >/dev/null 2>&1 || true
  else
    log "-> base rootfs: cached $BASE_TAR (made $(cat "$BASE_TAR.created" 2>/dev/null || echo '?'); IMAGES_REFRESH_BASE=1 renews it)"
  fi
  if bh inspect --type image "localhost/$BASE_IMAGE" >/dev/null 2>&1; then
    log "-> base image: $BASE_IMAGE present in the buildah store"
  else
    step base-import import_base
  fi
}

buildah_build() {  # buildah_build NAME
  local name="$1" tag="${IMAGE_TAG[$1]}" archive="$ARCHIVE_DIR/mlops-$1.docker.tar" context
  local -a secrets; mapfile -t secrets < <(secret_args)
  mkdir -p "$ARCHIVE_DIR"
  context=$(build_context "$name")
  # --network host: RUN steps reach the Debian mirror and PyPI like the host does (buildah's private
  # network needs a CNI setup this machine does not have). --pull=never: FROM resolves in this store.
  STEP_SHOW='^(\[[0-9]+/[0-9]+\] )?(STEP [0-9]+/[0-9]+:|COMMIT)|^(--> Using cache|Error)' \
    step "build-$name" bh bud --layers --pull=never --network host --isolation oci \
      --iidfile "$ARCHIVE_DIR/.$name.$$.iid" \
      "${secrets[@]}" -f "$REPO_ROOT/images/$name/Dockerfile" -t "$tag" "$context"
  local iid; iid=$(cat "$ARCHIVE_DIR/.$name.$$.iid"); rm -f "$ARCHIVE_DIR/.$name.$$.iid"
  # docker-archive keeps layers uncompressed: gzipping ~1 GB on every rebuild took 4x longer (23s vs 6s)
  # than writing it to the local disk, and unchanged layers keep their digests for containerd.
  # By image ID, not tag: another build sharing this cache may have retagged $tag meanwhile.
  step "archive-$name" bh push "$iid" "docker-archive:$archive.$$.part:$tag"
  mv -f "$archive.$$.part" "$archive"  # whole or not at all, also when two builds share the cache
  if [ "$IMAGES_IMPORT" = 0 ]; then
    log "   IMAGES_IMPORT=0: archive kept at $archive"
  elif ctr --address "$CONTAINERD_ADDRESS" version >/dev/null 2>&1; then
    step "import-$name" ctr -n k8s.io --address "$CONTAINERD_ADDRESS" images import "$archive"
  else
    log "   containerd is not reachable at $CONTAINERD_ADDRESS (cluster not up?); archive kept. Import later:"
    log "     ctr -n k8s.io --address $CONTAINERD_ADDRESS images import $archive"
  fi
}

main() {
  local -a names=("$@"); [ ${#names[@]} -gt 0 ] || names=(runtime operator batteries)
  local n t0=$SECONDS
  for n in "${names[@]}"; do [ -n "${IMAGE_TAG[$n]:-}" ] || die "unknown image '$n' (runtime | operator | batteries)"; done
  mkdir -p "$LOG_DIR"
  [ -z "$BUILD_CA_BUNDLE" ] || [ -s "$BUILD_CA_BUNDLE" ] \
    || die "BUILD_CA_BUNDLE (or PIP_CERT) names '$BUILD_CA_BUNDLE', which is missing or empty"
  if want_docker; then
    log "images: docker build of ${names[*]}"
    for n in "${names[@]}"; do docker_build "$n"; done
  else
    [ "$(id -u)" -eq 0 ] || die "the offline image build (debootstrap, buildah, ctr) needs root; or use Docker"
    need buildah "Run tests/infra/install-deps.sh."
    need debootstrap "Run tests/infra/install-deps.sh."
    log "images: offline build of ${names[*]} (buildah $BUILDAH_STORAGE_DRIVER store in $BUILDAH_STORE)"
    ensure_base
    for n in "${names[@]}"; do buildah_build "$n"; done
  fi
  log "images: done in $((SECONDS - t0))s"
}

main "$@"
