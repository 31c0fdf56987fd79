#!/usr/bin/env bash
# Builds the krew archive of `kubectl mlops` and its manifest with the archive's sha256:
#   manifests/krew/build.sh [OUT_DIR]     (default dist/krew)
# then: kubectl krew install --manifest=OUT_DIR/mlops.yaml --archive=OUT_DIR/kubectl-mlops.tar.gz
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-dist/krew}"
mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$here/kubectl-mlops" "$stage/kubectl-mlops"
printf 'mlops-operator is licensed under the Apache License, Version 2.0 (pyproject.toml).\n' > "$stage/LICENSE.txt"
# Reproducible: fixed order, owner and time, so the same sources give the same sha256.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00:00Z' \
  -C "$stage" -cf - kubectl-mlops LICENSE.txt | gzip -n > "$out/kubectl-mlops.tar.gz"
sha="$(sha256sum "$out/kubectl-mlops.tar.gz" | cut -d' ' -f1)"
sed "s/^    sha256: SHA256$/    sha256: $sha/" "$here/mlops.yaml" > "$out/mlops.yaml"
echo "$out/kubectl-mlops.tar.gz sha256 $sha"
