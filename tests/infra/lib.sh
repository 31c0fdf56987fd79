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

K8S_BIN="$CACHE_DIR/kubernetes/$K8S_VERSION/bin"
TOOLS_BIN="$CACHE_DIR/tools/bin"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

need() {  # need CMD "how to get it"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found. $2"
}
